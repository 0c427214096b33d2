# Stage 8: train the HMR regressor (SD and DSR runs, ablation variants).


include: "train_inputs.smk"


rule train_regressor:
    input:
        unpack(get_train_inputs),
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("train_regressor.py"),
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
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        **get_train_worker_resources(),
        mem_mb=6000,
    params:
        settings=get_train_params,
        device=lookup(dpath="device", within=config),
    script:
        "../scripts/train_regressor.py"
