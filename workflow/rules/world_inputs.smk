# Input functions of the open world's pretraining rules (world.smk); kept apart so that the rule file holds
# only rules (snakemake --lint).
from pipeline.train.pretrain import pretrain_settings

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
