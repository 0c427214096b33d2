"""The Graphonomy Universal checkpoint: its file name, where it is published, and the check that it is there.

Torch-free: :func:`check_checkpoint` runs at DAG-build time (``workflow/rules/common.smk``) and
:mod:`pipeline.world.assets` names the file, so neither imports the network code
(:mod:`pipeline.parsing.infer` re-exports these names).
"""

from __future__ import annotations

from pathlib import Path

#: The config key that holds the checkpoint path, and what the user must put there.
CHECKPOINT_CONFIG_KEY: str = "assets.graphonomy_checkpoint"
CHECKPOINT_FILE_NAME: str = "universal_trained.pth"
GRAPHONOMY_URL: str = "https://github.com/Gaoyiminggithub/Graphonomy"
#: Google Drive file id of the 'Universal trained model' link in the Graphonomy README.
CHECKPOINT_DRIVE_ID: str = "1sWJ54lCBFnzCNz5RTCGQmkVovkY9x8_D"
#: SHA-256 of the released file as reported by users (latent-pose-reenactment#28); about 160 MB.
CHECKPOINT_SHA256: str = "ad740cd1bc68f8f8754af10a0981da12843a6816a50aa2c47a8c532b14fe2209"
CHECKPOINT_OBTAIN_HINT: str = (
    f"download {CHECKPOINT_FILE_NAME} (Graphonomy Universal model, ~160 MB) from the 'Universal trained model' "
    f"Google Drive link in the Graphonomy GitHub README ({GRAPHONOMY_URL}; Drive file id {CHECKPOINT_DRIVE_ID}; "
    f"reported sha256 {CHECKPOINT_SHA256})"
)


class MissingCheckpointError(FileNotFoundError):
    """The Graphonomy checkpoint is not configured or not on disk."""


def check_checkpoint(path: str | Path | None, config_key: str = CHECKPOINT_CONFIG_KEY) -> Path:
    """Return ``path`` as a :class:`Path` if it is an existing file; otherwise raise a message saying how to fix it.

    Called at DAG-build time when the ``graphonomy`` parser backend is selected.

    Raises:
        MissingCheckpointError: naming ``config_key``, the expected file name and where it is published.
    """
    if path is None or str(path).strip() == "":
        raise MissingCheckpointError(
            f"{config_key} is not set, but the graphonomy parser needs the Graphonomy Universal checkpoint "
            f"{CHECKPOINT_FILE_NAME}: {CHECKPOINT_OBTAIN_HINT}, then set {config_key} to its path"
        )
    checkpoint = Path(path)
    if not checkpoint.is_file():
        raise MissingCheckpointError(
            f"{config_key} = {str(path)!r}: no such file. The graphonomy parser needs the Graphonomy Universal "
            f"checkpoint {CHECKPOINT_FILE_NAME}: {CHECKPOINT_OBTAIN_HINT}, then set {config_key} to its path"
        )
    return checkpoint
