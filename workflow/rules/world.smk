# Open world: free stand-ins for every licensed asset, written in the real formats.


include: "world_inputs.smk"
# The "Potential of DSR" experiment (paper §5.3) needs the true bodies and exact masks: open world only.
include: "potential.smk"


rule build_body_model:
    input:
        code=get_script_code("build_body_model.py"),
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
        "../../envs/body.yaml"
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
        code=get_script_code("make_scans.py"),
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
        "../../envs/world.yaml"
    params:
        accessory_prob=lookup(dpath="open_world/scans/accessory_prob", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/make_scans.py"


# One image-generation job per configured split (train and test), written where assets.* expects it.
for group, split in get_open_splits():

    rule:
        name:
            f"make_images_{group}_{split}"
        input:
            models=rules.build_body_model.output.models,
            regressors=rules.build_body_model.output.regressors,
            code=get_script_code("make_images.py"),
        output:
            **get_truth_output(group, split),
            annotations=config["assets"][f"{group}_datasets"][split]["annotations"],
            images=directory(config["assets"][f"{group}_datasets"][split]["images"]),
            labels=directory(get_label_root(group, split)),
            labels_gt=directory(get_label_root(group, split, exact=True)),
        log:
            f"logs/world/make_images/{group}_{split}.log",
        benchmark:
            f"benchmarks/world/make_images/{group}_{split}.tsv"
        conda:
            "../../envs/world.yaml"
        params:
            split=split,
            group=group,
            fmt=config["assets"][f"{group}_datasets"][split]["format"],
            settings=canonical(config["open_world"]["images"][group][split]),
            size=lookup(dpath="open_world/images/size", within=config),
            focal_range=lookup(dpath="open_world/images/focal_range", within=config),
            height_range=lookup(
                dpath="open_world/images/person_height_range", within=config
            ),
            azimuth_std_deg=lookup(
                dpath="open_world/images/azimuth_std_deg", within=config
            ),
            noise=canonical(lookup(dpath="open_world/parser_noise", within=config)),
            pseudo_gt=get_pseudo_gt_settings(group, split),
            seed=lookup(dpath="seed", within=config),
        script:
            "../scripts/make_images.py"


# Error of the pseudo ground truth itself (open_world.pseudo_gt): pseudo-GT vs true body per noisy split.
rule pseudo_gt_error:
    input:
        **get_pseudo_gt_error_inputs(),
        models=rules.build_body_model.output.models,
        regressors=rules.build_body_model.output.regressors,
        code=get_script_code("pseudo_gt_error.py"),
    output:
        table="results/world/pseudo_gt_error.csv",
        section="results/world/pseudo_gt_error.section.json",
    log:
        "logs/world/pseudo_gt_error.log",
    conda:
        "../../envs/world.yaml"
    params:
        splits=lookup(dpath="open_world/pseudo_gt/splits", within=config),
        formats={
            s: config["assets"]["train_datasets"][s]["format"]
            for s in config["open_world"]["pseudo_gt"]["splits"]
        },
    script:
        "../scripts/pseudo_gt_error.py"


rule plot_world:
    input:
        scans=rules.make_scans.output.summary,
        annotations=config["assets"]["train_datasets"]["coco_eft"]["annotations"],
        images=config["assets"]["train_datasets"]["coco_eft"]["images"],
        code=get_script_code("plot_world.py"),
    output:
        report(
            "results/world/contact_sheet.png",
            caption="../report/world.rst",
            category="Open world",
        ),
    log:
        "logs/world/plot_world.log",
    conda:
        "../../envs/world.yaml"
    params:
        scans=get_scan_names()[:16],
        fmt=config["assets"]["train_datasets"]["coco_eft"]["format"],
    script:
        "../scripts/plot_world.py"


rule check_prior_quality:
    input:
        prior=rules.accumulate_prior.output.prior,
        labels=expand("resources/scans/{scan}.labels.npy", scan=get_scan_names()),
        models=rules.build_body_model.output.models,
        code=get_script_code("check_prior_quality.py"),
    output:
        "results/prior/prior_quality.json",
    log:
        "logs/world/check_prior_quality.log",
    conda:
        "../../envs/world.yaml"
    script:
        "../scripts/check_prior_quality.py"


# The pretraining set: the open world's stand-in for the data SPIN's checkpoint was trained on, generated
# apart from every fine-tuning and test split (its own split names, hence its own people and cameras).
rule make_pretrain_images:
    input:
        models=rules.build_body_model.output.models,
        regressors=rules.build_body_model.output.regressors,
        code=get_script_code("make_images.py"),
    output:
        annotations="resources/datasets/pretrain/shard_{shard}/pretrain_{shard}.npz",
        images=directory("resources/datasets/pretrain/shard_{shard}/images"),
    log:
        "logs/world/make_pretrain_images/{shard}.log",
    benchmark:
        "benchmarks/world/make_pretrain_images/{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    # the pretraining chain is the demo's critical path: start it before the prior and mask stages
    priority: 10
    conda:
        "../../envs/world.yaml"
    params:
        group="pretrain",
        settings=get_pretrain_shard_settings,
        size=lookup(dpath="open_world/images/size", within=config),
        focal_range=lookup(dpath="open_world/images/focal_range", within=config),
        height_range=lookup(
            dpath="open_world/images/person_height_range", within=config
        ),
        azimuth_std_deg=lookup(dpath="open_world/images/azimuth_std_deg", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/make_images.py"


# The open world's SPIN checkpoint: full supervision on the pretraining set, written where
# assets.pretrained_checkpoint points (config/config.yaml), so every run in train.runs fine-tunes from it.
rule pretrain_regressor:
    input:
        annotations=[a for a, _ in get_pretrain_shards()],
        images=[i for _, i in get_pretrain_shards()],
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("train_regressor.py"),
    output:
        checkpoint=PRETRAIN_CHECKPOINT,
        metrics=PRETRAIN_METRICS,
        settings="results/pretrain/config.yaml",
    log:
        "logs/world/pretrain_regressor.log",
    benchmark:
        "benchmarks/world/pretrain_regressor.tsv"
    priority: 10
    conda:
        "../../envs/train.yaml"
    threads: config["open_world"]["pretrain"]["threads"]
    resources:
        mem_mb=6000,
    params:
        settings=get_pretrain_params,
        device=lookup(dpath="device", within=config),
    script:
        "../scripts/train_regressor.py"
