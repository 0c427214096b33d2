"""The self-contained HTML report of the whole pipeline (rule build_report)."""

from pipeline.evaluate.summary import write_pipeline_report
from pipeline.runtime import git_sha, setup_logging

log = setup_logging(snakemake.log[0])
inp, p = snakemake.input, snakemake.params
write_pipeline_report(
    snakemake.output[0],
    eval_csvs=inp.eval,
    prior_figures=inp.prior,
    mask_sheets=dict(zip(p.mask_datasets, inp.sheets)),
    mask_qc=dict(zip(p.mask_datasets, inp.qc)),
    training_curves=dict(zip(p.train_runs, inp.curves)),
    pretraining_curves=inp.pretrain_curves[0] if inp.pretrain_curves else None,
    qualitative=dict(zip(p.eval_runs, inp.qualitative)),
    ablation_csv=inp.ablation[0] if inp.ablation else None,
    section_files=inp.sections,
    provenance={"world": p.world, "seed": p.seed, "runs": ", ".join(p.eval_runs), "git": git_sha()},
)
