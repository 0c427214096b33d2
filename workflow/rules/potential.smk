# The "Potential of DSR" experiment (paper §5.3, Fig. 4), open world only: it needs the true bodies and the exact
# part masks (pipeline/world/potential.py). Included from world.smk.


include: "potential_inputs.smk"


rule potential_of_dsr:
    input:
        unpack(get_potential_start),
        unpack(get_potential_truth),
        annotations=get_potential_dataset()["annotations"],
        images=get_potential_dataset()["images"],
        labels_gt=get_label_root("train", config["potential"]["dataset"], exact=True),
        masks=f"results/masks/{config['potential']['dataset']}.h5",
        prior="results/prior/semantic_prior.npz",
        models=get_body_model_files(),
        regressors=JOINT_REGRESSORS,
        code=get_script_code("potential_of_dsr.py"),
    output:
        table="results/potential/potential_of_dsr.csv",
        joints="results/potential/potential_of_dsr_joints.csv",
        figure=report(
            "results/potential/fig4.png",
            caption="../report/potential.rst",
            category="Potential of DSR",
        ),
        section="results/potential/potential_of_dsr.section.json",
    log:
        "logs/potential/potential_of_dsr.log",
    benchmark:
        "benchmarks/potential/potential_of_dsr.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=6000,
    params:
        settings=get_potential_params(),
        device=lookup(dpath="device", within=config),
    script:
        "../scripts/potential_of_dsr.py"
