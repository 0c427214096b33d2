# Input functions of the training rules (workflow/rules/train.smk).
from pipeline.train.runs import RUN_PATTERN
from pipeline.train.settings import OFFICIAL_MAPPING, settings_from_config


def get_train_settings(wildcards):
    """The run's resolved settings (pipeline.train.settings); an unknown variant stops here, naming it."""
    return settings_from_config(
        config["train"],
        config["assets"]["train_datasets"],
        {name: f"results/masks/{name}.h5" for name in config["masks"]["datasets"]},
        wildcards.run,
        master_seed=config["seed"],
        device=config["device"],
        masks_mapping=config["masks"]["mapping"],
    )


def get_train_params(wildcards):
    """What determines the run's weights: only its own settings (an SD run ignores DSR settings)."""
    return get_train_settings(wildcards).params_dict()


def get_train_inputs(wildcards):
    """Annotations and image folders of the mix, and for DSR runs the mask stores and the semantic prior."""
    settings = get_train_settings(wildcards)
    inputs = {f"annotations_{d.name}": d.annotations for d in settings.datasets}
    inputs.update({f"images_{d.name}": d.images for d in settings.datasets})
    inputs.update({f"masks_{d.name}": d.masks for d in settings.datasets if d.masks})
    if settings.dsr_terms:
        inputs["prior"] = "results/prior/semantic_prior.npz"
    for key in ("smpl_mean_params", "pretrained_checkpoint"):
        if config["assets"][key]:
            inputs[key] = config["assets"][key]
    return inputs


def get_train_worker_resources():
    """train.distributed.world_size > 1: one SLURM task per DDP worker. `tasks` sets the job's task count
    (`tasks_per_gpu` 1: one GPU each when the profile gives the job `gpu` = world_size) and `mpi` (the
    launcher, srun) makes the SLURM executor run the job's script once, in the batch step, from where it
    starts the workers with srun (pipeline.train.distributed). `ddp_workers` / `ddp_backend` carry the setting to
    the script: resources, unlike params, are not rerun triggers, and the world size must not retrain a run.
    Nothing at 1: a single-process job as before."""
    distributed = config["train"]["distributed"]
    if distributed["world_size"] == 1:
        return {}
    return {
        "tasks": distributed["world_size"],
        "tasks_per_gpu": 1,
        "mpi": "srun",
        "ddp_workers": distributed["world_size"],
        "ddp_backend": distributed["backend"],
    }
