# Input functions and constants of the evaluation rules (evaluate.smk); kept apart so that the rule
# file holds only rules (snakemake --lint).
from pipeline.evaluate.names import MEAN_PARAMS_RUN, PRETRAINED_RUN, PROTOCOLS
from pipeline.train.runs import RUN_PATTERN, parse_run, run_names

TEST_SPLIT_PATTERN = "|".join(PROTOCOLS)
#: Runs that are evaluated: the trained runs and the baselines (RUN_PATTERN cannot match 'mean-params').
EVAL_RUN_PATTERN = f"{MEAN_PARAMS_RUN}|{RUN_PATTERN}"
#: What rule pretrain_regressor (open world) writes; when assets.pretrained_checkpoint names it, its
#: training curves join the report.
PRETRAIN_CHECKPOINT = "results/pretrain/model_checkpoint.pt"
PRETRAIN_METRICS = "results/pretrain/metrics.csv"
#: Test splits gathered by each evaluate_* rule.
EVAL_TABLES = {
    "3dpw": ["3dpw"],
    "h36m": ["h36m_p1", "h36m_p2"],
    "mpi_inf_3dhp": ["mpi_inf_3dhp"],
}


def get_baseline_runs():
    """'mean-params', plus 'pretrained' when assets.pretrained_checkpoint is set (table order)."""
    pretrained = [PRETRAINED_RUN] if config["assets"]["pretrained_checkpoint"] else []
    return [MEAN_PARAMS_RUN, *pretrained]


def get_eval_runs():
    """Runs in the evaluation tables, in row order: the baselines, then train.runs (checked by
    check_run_repetitions)."""
    check_run_repetitions(config["train"]["runs"])
    return [*get_baseline_runs(), *config["train"]["runs"]]


def check_run_repetitions(runs):
    """Each repetition of a variant once: 'sd' and 'sd-s0' train with the same seed, and
    the tables pair variants seed by seed (pipeline.evaluate.tables.seed_rows)."""
    seen = {}
    for run in runs:
        spec = parse_run(run, config["train"]["variants"])
        key = (spec.variant, spec.repetition)
        if key in seen:
            raise ValueError(
                f"train.runs: {seen[key]!r} and {run!r} are both repetition {spec.repetition} of "
                f"variant {spec.variant!r} (the same training seed); keep one of them"
            )
        seen[key] = run


def get_start_checkpoint():
    """The checkpoint every run starts from: assets.pretrained_checkpoint (a user's file or the one rule
    pretrain_regressor builds), else the first run's final.pt, whose mean-parameter buffers (never
    trained) are the training set's mean as in every run."""
    path = config["assets"]["pretrained_checkpoint"]
    return path or f"results/train/{config['train']['runs'][0]}/checkpoints/final.pt"


def get_checkpoint(wildcards):
    """The checkpoint a run is predicted with: its final.pt, assets.pretrained_checkpoint for
    'pretrained', the start checkpoint for 'mean-params' (only its buffers are used, n_iter = 0).
    """
    if wildcards.run == MEAN_PARAMS_RUN:
        return get_start_checkpoint()
    if wildcards.run == PRETRAINED_RUN:
        path = config["assets"]["pretrained_checkpoint"]
        if not path:
            raise ValueError(
                "run 'pretrained' needs assets.pretrained_checkpoint (e.g. SPIN's "
                "model_checkpoint.pt from SPIN's fetch_data.sh)"
            )
        return path
    return f"results/train/{wildcards.run}/checkpoints/final.pt"


def get_regressor_iterations(wildcards):
    """Regressor refinement steps: 0 for 'mean-params' (its output is the buffers), else the model's."""
    return 0 if wildcards.run == MEAN_PARAMS_RUN else None


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


def get_ablation_scores():
    """Score files of the ablation: the baselines, then every repetition of every variant."""
    split = config["evaluate"]["ablation"]["dataset"]
    runs = [*get_baseline_runs(), *get_ablation_runs()]
    return [f"results/eval/{split}/{run}.json" for run in runs]


def get_ablation_variants():
    """Ablation variant -> DSR terms, in table order."""
    return {
        v: list(config["train"]["variants"][v])
        for v in config["evaluate"]["ablation"]["variants"]
    }


#: Report sections (JSON, pipeline.evaluate.report.write_section_file) of jobs that only some DAGs hold; the
#: files that define such jobs register them here (the open world does so in world_inputs.smk).
REPORT_SECTIONS = []
#: The validation section (written by summarise_validation), first, when the runs validate.
VALIDATION_SECTION = "results/validation.section.json"


def get_report_ablation():
    """results/ablation.csv when evaluate.ablation.in_report (make study) asks the report to show it."""
    return (
        ["results/ablation.csv"] if config["evaluate"]["ablation"]["in_report"] else []
    )


def get_validation_runs():
    """Runs whose validation scores summarise_validation gathers: train.runs, then (evaluate.ablation.in_report)
    every ablation run that is not the same repetition of a variant as one of them; none without validation.
    """
    if config["train"]["validation"]["dataset"] is None:
        return []
    runs = list(config["train"]["runs"])
    if config["evaluate"]["ablation"]["in_report"]:
        seen = {
            (s.variant, s.repetition)
            for s in (parse_run(r, config["train"]["variants"]) for r in runs)
        }
        for run in get_ablation_runs():
            spec = parse_run(run, config["train"]["variants"])
            if (spec.variant, spec.repetition) not in seen:
                seen.add((spec.variant, spec.repetition))
                runs.append(run)
    return runs


def get_validation_metrics():
    """The training logs (metrics.csv) of get_validation_runs()."""
    return [f"results/train/{run}/metrics.csv" for run in get_validation_runs()]


def get_report_sections(wildcards):
    """The registered report sections (read when the DAG is built, after every rule file is included)."""
    return [VALIDATION_SECTION] * bool(get_validation_runs()) + list(REPORT_SECTIONS)


def get_qualitative_figures():
    """One qualitative figure per evaluated run (baselines included), same split and samples."""
    split = config["evaluate"]["qualitative"]["dataset"]
    return [f"results/eval/qualitative/{split}/{run}.png" for run in get_eval_runs()]


def get_pretrain_curves():
    """The pretraining curves when the runs start from rule pretrain_regressor's checkpoint (open world)."""
    if config["assets"]["pretrained_checkpoint"] == PRETRAIN_CHECKPOINT:
        return ["results/eval/curves/pretrain.png"]
    return []
