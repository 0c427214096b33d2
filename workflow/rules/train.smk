# Stage 8: train the HMR regressor (SD and DSR runs, ablation variants).
from pipeline.train.runs import RUN_PATTERN
from pipeline.train.settings import settings_from_config


def get_train_settings(wildcards):
    """The run's resolved settings (pipeline.train.settings); an unknown variant stops here, naming it."""
    return settings_from_config(
        config["train"],
        config["assets"]["train_datasets"],
        {name: f"results/masks/{name}.h5" for name in config["masks"]["datasets"]},
        wildcards.run,
        master_seed=config["seed"],
        device=config["device"],
    )


def get_train_params(wildcards):
    """What determines the run's weights: only its own settings (an SD run ignores DSR settings)."""
    return get_train_settings(wildcards).params_dict()


def get_train_inputs(wildcards):
    """Annotations of the mix, and for DSR runs the mask stores and the semantic prior."""
    settings = get_train_settings(wildcards)
    inputs = {f"annotations_{d.name}": d.annotations for d in settings.datasets}
    inputs.update({f"masks_{d.name}": d.masks for d in settings.datasets if d.masks})
    if settings.dsr_terms:
        inputs["prior"] = "results/prior/semantic_prior.npz"
    for key in ("smpl_mean_params", "pretrained_checkpoint"):
        if config["assets"][key]:
            inputs[key] = config["assets"][key]
    return inputs


rule train_regressor:
    input:
        unpack(get_train_inputs),
        models=get_body_model_files(),
        regressors=config["assets"]["joint_regressors"],
        code=code(
            "train/loop.py",
            "train/data.py",
            "train/augment.py",
            "train/crop.py",
            "train/settings.py",
            "model/hmr.py",
            "losses/standard.py",
            "losses/dsr.py",
            "losses/composite.py",
            "render/soft.py",
            "render/camera.py",
        ),
    output:
        final="results/train/{run}/checkpoints/final.pt",
        metrics="results/train/{run}/metrics.csv",
        settings="results/train/{run}/config.yaml",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../../envs/pipeline.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=6000,
    params:
        settings=get_train_params,
        device=lookup(dpath="device", within=config),
    script:
        "../scripts/train_regressor.py"
