"""What is wrong with a file a reader could not parse, in words, for the readers' error messages.

Every reader in :mod:`pipeline.io` (and :mod:`pipeline.body.smpl_io`) raises one error whose message is
``"{path}: {what is wrong}; {what to do}"``. :func:`describe_unreadable` gives the middle part from the file
and the parser's exception: an empty file, a pickle written by a newer Python, or a truncated/corrupt file
(with the parser's own words, which rarely name the file).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

#: First byte of a pickle of protocol >= 2 (``PROTO`` opcode); the second byte is the protocol number.
PICKLE_PROTO_OPCODE: int = 0x80
#: Leading bytes quoted when a file is not of the expected kind at all.
HEAD_BYTES: int = 8
#: ``np.load(..., allow_pickle=False)``'s words for a file with neither a zip nor an .npy header.
NUMPY_NOT_ARCHIVE: str = "contains pickled (object) data"


def pickle_protocol(path: str | Path) -> int | None:
    """The protocol a pickle file declares in its first two bytes, or None (protocol 0/1, or not a pickle)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return None
    if len(head) == 2 and head[0] == PICKLE_PROTO_OPCODE:
        return head[1]
    return None


def _head(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


def describe_unreadable(path: str | Path, exc: BaseException, kind: str, *, pickled: bool = False) -> str:
    """What is wrong with ``path``, whose parser raised ``exc``.

    Args:
        path: the file.
        exc: the parser's exception.
        kind: what the file should be, with its article (``"an npz archive"``, ``"a pickle"``).
        pickled: the file should be a pickle: a protocol newer than this Python reads is named as such.

    Returns:
        e.g. ``"the file is empty (0 bytes)"``, ``"written with pickle protocol 6, but Python 3.11 reads
        protocols up to 5 (...)"``, ``"not an npz archive (starts with b'...': neither a zip nor an .npy
        header)"`` or ``"truncated, corrupt or not an npz archive (1,234 bytes; BadZipFile: File is not a zip
        file)"``.
    """
    if isinstance(exc, PermissionError | IsADirectoryError):
        return f"cannot be opened ({type(exc).__name__}: {exc.strerror})"
    try:
        size: int | None = Path(path).stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "the file is empty (0 bytes)"
    if pickled:
        protocol = pickle_protocol(path)
        if protocol is not None and protocol > pickle.HIGHEST_PROTOCOL:
            return (f"written with pickle protocol {protocol}, but Python {sys.version_info.major}."
                    f"{sys.version_info.minor} reads protocols up to {pickle.HIGHEST_PROTOCOL} (a newer Python "
                    f"can re-save it with pickle.dump(obj, fh, protocol={pickle.DEFAULT_PROTOCOL}))")
    if isinstance(exc, ValueError) and NUMPY_NOT_ARCHIVE in str(exc):
        # np.load unpickles any file without a zip or .npy header; its advice to load it unsafely does not apply
        return f"not {kind} (starts with {_head(path)!r}: neither a zip nor an .npy header)"
    size_text = "" if size is None else f"{size:,} bytes; "
    return f"truncated, corrupt or not {kind} ({size_text}{type(exc).__name__}: {exc})"
