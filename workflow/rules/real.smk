# Real world: prepare what users cannot be expected to build by hand from the files they download.


rule prepare_body_model:
    input:
        smpl=get_downloaded_smpl_files(),
        j_regressor_h36m=lookup(dpath="assets/j_regressor_h36m", within=config),
        j_regressor_extra=lookup(dpath="assets/j_regressor_extra", within=config),
        code=get_script_code("prepare_body_model.py"),
    output:
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        parts=f"{BODY_MODEL_DIR}/parts.npz",
        report=f"{BODY_MODEL_DIR}/prepare_report.json",
    log:
        "logs/real/prepare_body_model.log",
    conda:
        "../../envs/body.yaml"
    params:
        smpl_dir=lookup(dpath="assets/body_models", within=config),
    script:
        "../scripts/prepare_body_model.py"
