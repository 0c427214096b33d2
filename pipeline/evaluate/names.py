"""Names of the evaluation: test splits -> protocols, and the baseline runs.

Torch-free: the workflow reads these at DAG-build time (``workflow/rules/evaluate_inputs.smk``), so they live
apart from the prediction and report code (:mod:`pipeline.evaluate.predict` and
:mod:`pipeline.evaluate.report` re-export them).
"""

from __future__ import annotations

#: Test split name (``assets.test_datasets`` key) -> evaluation protocol (the ``dataset`` column of the CSVs).
PROTOCOLS: dict[str, str] = {
    "3dpw": "3dpw",
    "h36m_p1": "h36m-p1",
    "h36m_p2": "h36m-p2",
    "mpi_inf_3dhp": "mpi-inf-3dhp",
}
#: Run name of the mean-parameter baseline (the regressor's output before any refinement step).
MEAN_PARAMS_RUN: str = "mean-params"
#: Run name of ``assets.pretrained_checkpoint`` evaluated as it is.
PRETRAINED_RUN: str = "pretrained"
#: Baseline runs, in table order (before every trained run).
BASELINE_RUNS: tuple[str, ...] = (MEAN_PARAMS_RUN, PRETRAINED_RUN)
