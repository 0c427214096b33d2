# Input functions and constants of the evaluation rules (evaluate.smk); kept apart so that the rule
# file holds only rules (snakemake --lint).
from pipeline.evaluate.predict import PROTOCOLS
from pipeline.train.runs import RUN_PATTERN, parse_run, run_names

#: Run name of assets.pretrained_checkpoint, evaluated directly when set.
PRETRAINED_RUN = "pretrained"
TEST_SPLIT_PATTERN = "|".join(PROTOCOLS)
#: Test splits gathered by each evaluate_* rule.
EVAL_TABLES = {
    "3dpw": ["3dpw"],
    "h36m": ["h36m_p1", "h36m_p2"],
    "mpi_inf_3dhp": ["mpi_inf_3dhp"],
}


def get_eval_runs():
    """Runs in the evaluation tables: train.runs, plus 'pretrained' when a checkpoint is configured."""
    runs = list(config["train"]["runs"])
    if config["assets"]["pretrained_checkpoint"]:
        runs.append(PRETRAINED_RUN)
    return runs


def get_checkpoint(wildcards):
    """The run's final checkpoint, or assets.pretrained_checkpoint for the run 'pretrained'."""
    if wildcards.run == PRETRAINED_RUN:
        path = config["assets"]["pretrained_checkpoint"]
        if not path:
            raise ValueError(
                "run 'pretrained' needs assets.pretrained_checkpoint (e.g. SPIN's "
                "model_checkpoint.pt from SPIN's fetch_data.sh)"
            )
        return path
    return f"results/train/{wildcards.run}/checkpoints/final.pt"


def get_test_split(key):
    """Input function: a test split's annotations, images or format (assets.test_datasets)."""
    return lambda wildcards: config["assets"]["test_datasets"][wildcards.dataset][key]


def get_scores(table, runs=None):
    """Score files of every (split, run) of one evaluation table."""
    runs = get_eval_runs() if runs is None else runs
    return [f"results/eval/{s}/{r}.json" for s in EVAL_TABLES[table] for r in runs]


def get_ablation_runs():
    """variant-s0 ... variant-s{k-1} of every ablation variant (unknown variants stop here)."""
    settings = config["evaluate"]["ablation"]
    for variant in settings["variants"]:
        parse_run(variant, config["train"]["variants"])
    return run_names(settings["variants"], settings["repetitions"])


def get_ablation_variants():
    """Ablation variant -> DSR terms, in table order."""
    return {
        v: list(config["train"]["variants"][v])
        for v in config["evaluate"]["ablation"]["variants"]
    }


def get_qualitative_figures():
    split = config["evaluate"]["qualitative"]["dataset"]
    return [f"results/eval/qualitative/{split}/{run}.png" for run in get_eval_runs()]
