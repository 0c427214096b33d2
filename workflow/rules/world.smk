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


rule make_scans:
    input:
        models=rules.build_body_model.output.models,
        code=code(
            "world/scans.py", "world/garments.py", "world/poses.py", "io/agora_fit.py"
        ),
    output:
        obj=expand("resources/scans/{scan}.obj", scan=get_scan_names()),
        fits=expand("resources/scans/{scan}.pkl", scan=get_scan_names()),
        labels=expand("resources/scans/{scan}.labels.npy", scan=get_scan_names()),
        summary="resources/scans/summary.json",
    log:
        "logs/world/make_scans.log",
    benchmark:
        "benchmarks/world/make_scans.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        accessory_prob=lookup(dpath="open_world/scans/accessory_prob", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/make_scans.py"
