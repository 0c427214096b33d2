# Pseudo-ground-truth masks: parse training images in shards, clean them into HDF5.
from pipeline.train.settings import OFFICIAL_MAPPING


rule parse_images:
    input:
        unpack(get_image_parser_inputs),
        annotations=get_train_annotations,
        images=get_train_images,
        code=get_script_code("parse_images.py"),
    output:
        "results/masks/{dataset}/parsing/{shard}.h5",
    log:
        "logs/masks/parse_images/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/masks/parse_images/{dataset}_{shard}.tsv"
    wildcard_constraints:
        dataset=TRAIN_SPLIT_PATTERN,
        shard=r"\d+",
    conda:
        "../../envs/masks.yaml"
    params:
        fmt=get_train_format,
        parser=get_parser_params("masks"),
        num_shards=lookup(dpath="masks/num_shards", within=config),
    script:
        "../scripts/parse_images.py"


rule clean_masks:
    input:
        annotations=get_train_annotations,
        images=get_train_images,
        shards=get_parse_shards,
        code=get_script_code("clean_masks.py"),
    output:
        store="results/masks/{dataset}.h5",
        qc="results/masks/{dataset}.qc.json",
        sheet=report(
            "results/masks/{dataset}.contact_sheet.png",
            caption="../report/masks.rst",
            category="Pseudo-GT masks",
        ),
    log:
        "logs/masks/clean_masks/{dataset}.log",
    benchmark:
        "benchmarks/masks/clean_masks/{dataset}.tsv"
    wildcard_constraints:
        dataset=TRAIN_SPLIT_PATTERN,
    conda:
        "../../envs/masks.yaml"
    params:
        fmt=get_train_format,
        settings=get_cleaning_params(),
        parser=lookup(dpath="masks/parser/backend", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/clean_masks.py"


# A second mask store per dataset with another DSR-C mapping, for runs that need it (the official variant's
# switch classes8 reads results/masks/official8/{dataset}.h5); same cleaning, only the mapping differs.
rule clean_masks_mapped:
    input:
        annotations=get_train_annotations,
        images=get_train_images,
        shards=get_parse_shards,
        code=get_script_code("clean_masks.py"),
    output:
        store="results/masks/{mapping}/{dataset}.h5",
        qc="results/masks/{mapping}/{dataset}.qc.json",
        sheet="results/masks/{mapping}/{dataset}.contact_sheet.png",
    log:
        "logs/masks/clean_masks_mapped/{mapping}/{dataset}.log",
    benchmark:
        "benchmarks/masks/clean_masks_mapped/{mapping}/{dataset}.tsv"
    wildcard_constraints:
        dataset=TRAIN_SPLIT_PATTERN,
        mapping=OFFICIAL_MAPPING,
    conda:
        "../../envs/masks.yaml"
    params:
        fmt=get_train_format,
        settings=get_mapped_cleaning_params,
        parser=lookup(dpath="masks/parser/backend", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/clean_masks.py"
