# Pseudo-ground-truth masks: parse training images in shards, clean them into HDF5.


rule parse_images:
    input:
        unpack(get_image_parser_inputs),
        annotations=get_train_annotations,
        images=get_train_images,
        code=code("masks/parse_images.py", "io/masks_h5.py"),
    output:
        "results/masks/{dataset}/parsing/{shard}.h5",
    log:
        "logs/masks/parse_images/{dataset}_{shard}.log",
    benchmark:
        "benchmarks/masks/parse_images/{dataset}_{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../../envs/masks.yaml"
    params:
        fmt=get_train_format,
        parser=lookup(dpath="masks/parser", within=config),
        num_shards=lookup(dpath="masks/num_shards", within=config),
        device=lookup(dpath="device", within=config),
    script:
        "../scripts/parse_images.py"


rule clean_masks:
    input:
        annotations=get_train_annotations,
        images=get_train_images,
        shards=get_parse_shards,
        code=code("masks/clean.py", "masks/mappings.py", "io/masks_h5.py"),
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
    conda:
        "../../envs/masks.yaml"
    params:
        fmt=get_train_format,
        settings=lookup(dpath="masks", within=config),
        parser=lookup(dpath="masks/parser/backend", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/clean_masks.py"
