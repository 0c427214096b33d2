# Input functions of the open world's pretraining rules (world.smk); kept apart so that the rule file holds
# only rules (snakemake --lint).
from pipeline.train.pretrain import pretrain_settings
from pipeline.world.pseudo_gt import truth_path

PRETRAIN_ROOT = "resources/datasets/pretrain"


def get_pretrain_shards():
    """(annotations, images) of every pretraining shard."""
    n = config["open_world"]["pretrain"]["images"]["shards"]
    return [
        (
            f"{PRETRAIN_ROOT}/shard_{k}/pretrain_{k}.npz",
            f"{PRETRAIN_ROOT}/shard_{k}/images",
        )
        for k in range(n)
    ]


def get_pretrain_shard_settings(wildcards):
    """Image count (the set split evenly over the shards) and clutter of one shard."""
    images = config["open_world"]["pretrain"]["images"]
    k, n = int(wildcards.shard), images["shards"]
    return {
        "count": images["count"] // n + (k < images["count"] % n),
        "distractor_prob": images["distractor_prob"],
        "occluder_prob": images["occluder_prob"],
    }


def get_pretrain_params(wildcards):
    """The pretraining run's settings (pipeline.train.pretrain), as the rule's params."""
    return pretrain_settings(
        config["open_world"]["pretrain"],
        config["train"],
        get_pretrain_shards(),
        master_seed=config["seed"],
    ).params_dict()


def get_pseudo_gt_settings(group, split):
    """The pseudo-GT error model of a generated split (open_world.pseudo_gt), or {} for exact labels: only the
    listed training splits get it, so changing it reruns only them."""
    settings = dict(config["open_world"]["pseudo_gt"])
    if group != "train" or split not in settings.pop("splits"):
        return {}
    return canonical(settings)


def get_truth_output(group, split):
    """The truth file of a training split (pipeline.world.pseudo_gt.truth_path), as a named output; none for
    test splits."""
    if group != "train":
        return {}
    annotations = config["assets"]["train_datasets"][split]["annotations"]
    return {"truth": str(truth_path(annotations))}


def get_pseudo_gt_error_inputs():
    """Annotations and truth files of the noisy training splits, for rule pseudo_gt_error."""
    splits = config["open_world"]["pseudo_gt"]["splits"]
    unknown = sorted(set(splits) - set(config["open_world"]["images"]["train"]))
    if unknown:
        raise ValueError(
            f"config open_world.pseudo_gt.splits names {unknown}, which are not generated training splits; "
            f"allowed: {sorted(config['open_world']['images']['train'])} (open_world.images.train)"
        )
    inputs = {}
    for split in splits:
        annotations = config["assets"]["train_datasets"][split]["annotations"]
        inputs[f"annotations_{split}"] = annotations
        inputs[f"truth_{split}"] = str(truth_path(annotations))
    return inputs


# The open world's own sections of results/report.html: the error of the pseudo ground truth, when a split
# carries one, and the Potential of DSR experiment.
if config["open_world"]["pseudo_gt"]["splits"]:
    REPORT_SECTIONS.append("results/world/pseudo_gt_error.section.json")
REPORT_SECTIONS.append("results/potential/potential_of_dsr.section.json")
