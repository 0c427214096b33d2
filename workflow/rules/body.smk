# Body model checks that hold in every world (the open world builds the files in world.smk).


rule check_body_model:
    input:
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("check_body_model.py"),
    output:
        report="results/body/body_model_check.json",
        figure=report(
            "results/body/body_models.png",
            caption="../report/body_models.rst",
            category="Body model",
        ),
    log:
        "logs/body/check_body_model.log",
    conda:
        "../../envs/body.yaml"
    params:
        model_dir=lambda wildcards, input: Path(input.models[0]).parent,
    script:
        "../scripts/check_body_model.py"
