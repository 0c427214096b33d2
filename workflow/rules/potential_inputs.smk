# Input functions of rule potential_of_dsr (potential.smk); kept apart so that the rule file holds only rules
# (snakemake --lint).
from pipeline.losses.terms import DSR_TERMS
from pipeline.params import canonical

#: The DSR terms of the experiment's arms (pipeline.world.potential.ARMS).
POTENTIAL_DSR_TERMS = ("dsr_mc", "dsr_c")
#: Keys of the train section the experiment shares ("the same hyper-parameters used for other experiments").
POTENTIAL_TRAIN_KEYS = [
    "weight_decay",
    "grad_clip_norm",
    "backbone",
    "n_iter",
    "image_size",
    "render_size",
    "renderer",
    "dsr_reduction",
    "dsr_c_requires_mc",
    "openpose_train_weight",
    "gt_train_weight",
]


def get_potential_dataset():
    """The training split the fixed batch is drawn from (potential.dataset); it needs a mask store."""
    name = config["potential"]["dataset"]
    if name not in config["masks"]["datasets"]:
        raise ValueError(
            f"potential.dataset {name!r} has no mask store: add it to masks.datasets "
            f"(now {config['masks']['datasets']}) or choose one of them"
        )
    return config["assets"]["train_datasets"][name]


def get_potential_params():
    """What determines the experiment's numbers: its own section, the shared train keys and the split's files."""
    pot, train = config["potential"], config["train"]
    data = get_potential_dataset()
    return canonical(
        {
            **{k: train[k] for k in POTENTIAL_TRAIN_KEYS},
            # weights of DSR terms the experiment does not use (dsr_fb, ...) would rerun it for nothing
            "loss_weights": {
                term: w
                for term, w in train["loss_weights"].items()
                if term not in DSR_TERMS or term in POTENTIAL_DSR_TERMS
            },
            "lr": train["lr"] if pot["lr"] is None else pot["lr"],
            "dataset": pot["dataset"],
            "annotations": data["annotations"],
            "images": data["images"],
            "fmt": data["format"],
            "batch_size": pot["batch_size"],
            "steps": pot["steps"],
            "joints_3d": pot["joints_3d"],
            "seed": config["seed"],
            "figure_samples": pot["figure"]["samples"],
            "tile_px": pot["figure"]["tile_px"],
        }
    )


def get_potential_start(wildcards):
    """The start every run fine-tunes from: the pretrained checkpoint and SPIN's mean parameters, when set."""
    return {
        key: config["assets"][key]
        for key in ("smpl_mean_params", "pretrained_checkpoint")
        if config["assets"][key]
    }


def get_potential_truth(wildcards):
    """The split's truth file (the open world writes one beside every training split's annotations)."""
    return get_truth_output("train", config["potential"]["dataset"])
