# Open world: free stand-ins for every licensed asset, written in the real formats.


rule build_body_model:
    input:
        code=code("body/anny_build.py", "body/parts.py", "body/joints.py"),
    output:
        models=expand(
            "resources/body_models/SMPL_{gender}.{ext}",
            gender=["NEUTRAL", "MALE", "FEMALE"],
            ext=["npz", "pkl"],
        ),
        regressors="resources/body_models/joint_regressors.npz",
        parts="resources/body_models/parts.npz",
        report="resources/body_models/build_report.json",
    log:
        "logs/world/build_body_model.log",
    benchmark:
        "benchmarks/world/build_body_model.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        n_shape_samples=lookup(
            dpath="open_world/body_model/n_shape_samples", within=config
        ),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/build_body_model.py"
