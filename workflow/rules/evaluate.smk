# Stage 9: evaluate trained runs on the test protocols; CSVs, figures and the report.
# Per (test split, run): predict once, score once, so retraining one run re-evaluates only that run.
# The baselines go through the same rules: 'mean-params' (the start checkpoint's mean-parameter
# buffers, predicted with n_iter = 0) and 'pretrained' (assets.pretrained_checkpoint).


include: "evaluate_inputs.smk"


rule predict_test_split:
    input:
        checkpoint=get_checkpoint,
        annotations=get_test_split("annotations"),
        images=get_test_split("images"),
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("predict_test_split.py"),
    output:
        "results/eval/{dataset}/{run}.predictions.npz",
    log:
        "logs/evaluate/predict_test_split/{dataset}_{run}.log",
    benchmark:
        "benchmarks/evaluate/predict_test_split/{dataset}_{run}.tsv"
    wildcard_constraints:
        dataset=TEST_SPLIT_PATTERN,
        run=EVAL_RUN_PATTERN,
    conda:
        "../../envs/evaluate.yaml"
    # one thread: the same predictions as with two (bit for bit on the demo's 3DPW- and MPI-INF-3DHP-style
    # splits), and a prediction job fits beside a training or Potential-of-DSR job on a 2-core machine
    # instead of waiting for both cores
    threads: 1
    resources:
        mem_mb=4000,
    params:
        fmt=get_test_split("format"),
        # a param: CPU kernels round differently per batch size (predictions move by 1-2 float32 ulps)
        batch_size=lookup(dpath="evaluate/batch_size", within=config),
        store_vertices=lookup(dpath="evaluate/store_vertices", within=config),
        device=lookup(dpath="device", within=config),
        n_iter=get_regressor_iterations,
    script:
        "../scripts/predict_test_split.py"


rule score_predictions:
    input:
        predictions=rules.predict_test_split.output[0],
        annotations=get_test_split("annotations"),
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("score_predictions.py"),
    output:
        score="results/eval/{dataset}/{run}.json",
        result="results/eval/{dataset}/{run}.result.npz",
    log:
        "logs/evaluate/score_predictions/{dataset}_{run}.log",
    benchmark:
        "benchmarks/evaluate/score_predictions/{dataset}_{run}.tsv"
    wildcard_constraints:
        dataset=TEST_SPLIT_PATTERN,
        run=EVAL_RUN_PATTERN,
    conda:
        "../../envs/evaluate.yaml"
    params:
        fmt=get_test_split("format"),
        world=lookup(dpath="world", within=config),
    script:
        "../scripts/score_predictions.py"


rule evaluate_3dpw:
    input:
        scores=get_scores("3dpw"),
        code=get_script_code("evaluate_tables.py"),
    output:
        table=report(
            "results/eval_3dpw.csv",
            caption="../report/eval_table.rst",
            category="Evaluation",
        ),
        per_joint="results/eval_3dpw_per_joint.csv",
        groups="results/eval_3dpw_joint_groups.csv",
        # mean ± sd over seeds per variant, paired difference to sd (pipeline.evaluate.tables.seed_rows)
        by_variant="results/eval_3dpw_by_variant.csv",
        per_joint_by_variant="results/eval_3dpw_per_joint_by_variant.csv",
        groups_by_variant="results/eval_3dpw_joint_groups_by_variant.csv",
    log:
        "logs/evaluate/evaluate_3dpw.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_tables.py"


rule evaluate_h36m:
    input:
        scores=get_scores("h36m"),
        code=get_script_code("evaluate_tables.py"),
    output:
        table=report(
            "results/eval_h36m.csv",
            caption="../report/eval_table.rst",
            category="Evaluation",
        ),
        per_joint="results/eval_h36m_per_joint.csv",
        groups="results/eval_h36m_joint_groups.csv",
        # mean ± sd over seeds per variant, paired difference to sd (pipeline.evaluate.tables.seed_rows)
        by_variant="results/eval_h36m_by_variant.csv",
        per_joint_by_variant="results/eval_h36m_per_joint_by_variant.csv",
        groups_by_variant="results/eval_h36m_joint_groups_by_variant.csv",
    log:
        "logs/evaluate/evaluate_h36m.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_tables.py"


rule evaluate_mpi_inf_3dhp:
    input:
        scores=get_scores("mpi_inf_3dhp"),
        code=get_script_code("evaluate_tables.py"),
    output:
        table=report(
            "results/eval_mpi_inf_3dhp.csv",
            caption="../report/eval_table.rst",
            category="Evaluation",
        ),
        per_joint="results/eval_mpi_inf_3dhp_per_joint.csv",
        groups="results/eval_mpi_inf_3dhp_joint_groups.csv",
        # mean ± sd over seeds per variant, paired difference to sd (pipeline.evaluate.tables.seed_rows)
        by_variant="results/eval_mpi_inf_3dhp_by_variant.csv",
        per_joint_by_variant="results/eval_mpi_inf_3dhp_per_joint_by_variant.csv",
        groups_by_variant="results/eval_mpi_inf_3dhp_joint_groups_by_variant.csv",
    log:
        "logs/evaluate/evaluate_mpi_inf_3dhp.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate_tables.py"


rule evaluate_ablation:
    input:
        scores=get_ablation_scores(),
        code=get_script_code("evaluate_ablation.py"),
    output:
        table=report(
            "results/ablation.csv",
            caption="../report/ablation.rst",
            category="Evaluation",
        ),
        runs="results/ablation_runs.csv",
    log:
        "logs/evaluate/evaluate_ablation.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        variants=get_ablation_variants(),
    script:
        "../scripts/evaluate_ablation.py"


rule summarise_validation:
    input:
        metrics=get_validation_metrics(),
        code=get_script_code("summarise_validation.py"),
    output:
        table="results/validation.csv",
        by_variant="results/validation_by_variant.csv",
        section=VALIDATION_SECTION,
    log:
        "logs/evaluate/summarise_validation.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        runs=get_validation_runs(),
        dataset=lookup(dpath="train/validation/dataset", within=config),
        world=lookup(dpath="world", within=config),
    script:
        "../scripts/summarise_validation.py"


rule plot_qualitative:
    input:
        predictions=rules.predict_test_split.output[0],
        annotations=get_test_split("annotations"),
        images=get_test_split("images"),
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("plot_qualitative.py"),
    output:
        report(
            "results/eval/qualitative/{dataset}/{run}.png",
            caption="../report/qualitative.rst",
            category="Evaluation",
            subcategory="Qualitative",
        ),
    log:
        "logs/evaluate/plot_qualitative/{dataset}_{run}.log",
    wildcard_constraints:
        dataset=TEST_SPLIT_PATTERN,
        run=EVAL_RUN_PATTERN,
    conda:
        "../../envs/evaluate.yaml"
    params:
        fmt=get_test_split("format"),
        num_images=lookup(dpath="evaluate/qualitative/count", within=config),
        tile_px=lookup(dpath="evaluate/qualitative/tile_px", within=config),
        columns=lookup(dpath="evaluate/qualitative/columns", within=config),
        ground_truth=lookup(dpath="evaluate/qualitative/ground_truth", within=config),
    script:
        "../scripts/plot_qualitative.py"


rule plot_training_curves:
    input:
        metrics="results/train/{run}/metrics.csv",
        code=get_script_code("plot_training_curves.py"),
    output:
        report(
            "results/eval/curves/{run}.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        "logs/evaluate/plot_training_curves/{run}.log",
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_training_curves.py"


# Open world: the curves of rule pretrain_regressor, drawn like a run's (see get_pretrain_curves).
rule plot_pretraining_curves:
    input:
        metrics=PRETRAIN_METRICS,
        code=get_script_code("plot_training_curves.py"),
    output:
        report(
            "results/eval/curves/pretrain.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        "logs/evaluate/plot_pretraining_curves.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_training_curves.py"


# 'pretrain' is not a run (RUN_PATTERN would admit it): its curves come from results/pretrain.
ruleorder: plot_pretraining_curves > plot_training_curves


rule build_report:
    input:
        eval=[f"results/eval_{name}.csv" for name in EVAL_TABLES],
        prior=rules.plot_prior.output,
        sheets=[
            f"results/masks/{name}.contact_sheet.png"
            for name in config["masks"]["datasets"]
        ],
        qc=[f"results/masks/{name}.qc.json" for name in config["masks"]["datasets"]],
        curves=[f"results/eval/curves/{run}.png" for run in config["train"]["runs"]],
        pretrain_curves=get_pretrain_curves(),
        qualitative=get_qualitative_figures(),
        sections=get_report_sections,
        ablation=get_report_ablation(),
        code=get_script_code("build_report.py"),
    output:
        "results/report.html",
    log:
        "logs/evaluate/build_report.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        mask_datasets=config["masks"]["datasets"],
        train_runs=config["train"]["runs"],
        eval_runs=get_eval_runs(),
        world=lookup(dpath="world", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/build_report.py"
