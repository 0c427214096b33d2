# Shared helpers: input functions and code-version inputs. Named get_* as in snakemake-workflows.
import re
from pathlib import Path

from pipeline.body.smpl_io import find_model_file
from pipeline.code_inputs import script_code_files, workflow_input_path
from pipeline.masks.clean import cleaning_params
from pipeline.params import canonical
from pipeline.prior.parse import parser_params
from pipeline.world.assets import check_real_assets, scan_ids

WORKFLOW_ROOT = Path(workflow.basedir)
GENDERS = ["neutral", "male", "female"]
# The body-model folder every stage reads, in both worlds: built by build_body_model (open world) or
# prepared from the SMPL download and SPIN's regressors by prepare_body_model (real world).
BODY_MODEL_DIR = "resources/body_models"
JOINT_REGRESSORS = f"{BODY_MODEL_DIR}/joint_regressors.npz"
#: The {dataset} wildcard of the mask rules: a training split's name, never a path, so that
#: results/masks/{dataset}.h5 does not also match the parse shards results/masks/{dataset}/parsing/{k}.h5.
TRAIN_SPLIT_PATTERN = "|".join(map(re.escape, config["assets"]["train_datasets"]))

# A missing licensed asset stops here, at DAG-build time, naming the key, path and where to obtain it.
check_real_assets(config)


def get_script_code(script):
    """The pipeline modules a rule's script (a file in workflow/scripts) runs: the import closure of its
    pipeline imports (pipeline.code_inputs), as the rule's code inputs, so an edit to any of them reruns it
    (rerun trigger mtime: an input newer than the outputs whose content differs from the recorded checksum).
    Relative paths when snakemake runs from the workflow root, so a moved project stays done.
    """
    files = script_code_files(
        [WORKFLOW_ROOT / "workflow" / "scripts" / script], WORKFLOW_ROOT
    )
    return [workflow_input_path(f, WORKFLOW_ROOT, Path.cwd()) for f in files]


def get_body_model_files():
    return [f"{BODY_MODEL_DIR}/SMPL_{g.upper()}.npz" for g in GENDERS]


def get_downloaded_smpl_files():
    """Real world: the three SMPL files of the download in assets.body_models (official names accepted)."""
    return [
        str(find_model_file(config["assets"]["body_models"], g, "assets.body_models"))
        for g in GENDERS
    ]


def get_final_targets():
    """Default targets: the furthest products of the stages that exist."""
    return [
        "results/body/body_model_check.json",
        "results/world/contact_sheet.png" if config["world"] == "open" else [],
        "results/prior/prior_views.png",
        get_mask_stores(),
        "results/prior/prior_quality.json" if config["world"] == "open" else [],
        "results/eval_3dpw.csv",
        "results/eval_h36m.csv",
        "results/eval_mpi_inf_3dhp.csv",
        "results/report.html",
        (
            [
                config["assets"][f"{g}_datasets"][s]["annotations"]
                for g, s in get_open_splits()
            ]
            if config["world"] == "open"
            else []
        ),
    ]


def get_scan_names():
    """Scan ids: every {scan}.obj with a {scan}.pkl fit in assets.scans, or the generated ones."""
    return scan_ids(config)


def get_open_splits():
    """(group, name) of every generated image split: train and test datasets of the open world."""
    images = config["open_world"]["images"]
    return [(group, name) for group in ("train", "test") for name in images[group]]


def get_label_root(group, split, exact=False):
    """Folder of the parser-like label maps generated beside a split's image root."""
    images = Path(config["assets"][f"{group}_datasets"][split]["images"])
    return str(images.parent / ("labels_gt" if exact else "labels"))


def get_scan_file(ext):
    """Input function: a scan's file ({scan}.obj, {scan}.pkl, {scan}.labels.npy) in assets.scans."""
    return lambda wildcards: str(
        Path(config["assets"]["scans"]) / f"{wildcards.scan}.{ext}"
    )


def get_scan_parser_inputs(wildcards):
    """What the configured scan parser reads besides the views: the scan's labels or the checkpoint."""
    if config["prior"]["parser"]["backend"] == "rendered":
        return {
            "scan_obj": get_scan_file("obj")(wildcards),
            "scan_labels": get_scan_file("labels.npy")(wildcards),
        }
    return {"checkpoint": config["assets"]["graphonomy_checkpoint"]}


def get_parser_params(stage):
    """What determines the parse of stage 'prior' (scan views) or 'masks' (training images): the rendered
    backend ignores scales, flip and device; the scan views draw the parser noise (pipeline.prior.parse).
    """
    noise, seed = None, None
    if stage == "prior":
        noise, seed = config["open_world"]["parser_noise"], config["seed"]
    return parser_params(
        config[stage]["parser"], device=config["device"], noise=noise, seed=seed
    )


def get_cleaning_params():
    """The masks.* keys that change a mask store (pipeline.masks.clean.cleaning_params)."""
    return cleaning_params(config["masks"])


def get_mapped_cleaning_params(wildcards):
    """clean_masks_mapped: the masks.* cleaning keys with the DSR-C mapping of the {mapping} wildcard."""
    return cleaning_params({**config["masks"], "mapping": wildcards.mapping})


def check_parser_checkpoints():
    """A graphonomy parser without its checkpoint stops the run at DAG-build time, naming the key."""
    if "graphonomy" in (
        config["prior"]["parser"]["backend"],
        config["masks"]["parser"]["backend"],
    ):
        from pipeline.parsing.checkpoint import check_checkpoint

        check_checkpoint(
            config["assets"]["graphonomy_checkpoint"], "assets.graphonomy_checkpoint"
        )


check_parser_checkpoints()


def get_train_annotations(wildcards):
    return config["assets"]["train_datasets"][wildcards.dataset]["annotations"]


def get_train_images(wildcards):
    return config["assets"]["train_datasets"][wildcards.dataset]["images"]


def get_train_format(wildcards):
    return config["assets"]["train_datasets"][wildcards.dataset]["format"]


def get_parse_shards(wildcards):
    n = config["masks"]["num_shards"]
    return [f"results/masks/{wildcards.dataset}/parsing/{k}.h5" for k in range(n)]


def get_image_parser_inputs(wildcards):
    """Rendered backend: the open world's label maps; graphonomy: the checkpoint."""
    if config["masks"]["parser"]["backend"] == "rendered":
        images = Path(get_train_images(wildcards))
        return {"labels": str(images.parent / "labels")}
    return {"checkpoint": config["assets"]["graphonomy_checkpoint"]}


def get_mask_stores():
    return [f"results/masks/{name}.h5" for name in config["masks"]["datasets"]]
