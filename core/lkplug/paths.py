"""Output paths: checked before a run starts, so a recording does not learn after an hour of waiting
for a participant that its folder is missing."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MediaError


def refuse_folder(path: Path, example: str = "out.wav") -> None:
    """Raise MediaError when ``path`` is an existing folder (``wav:adir``): an output is a file."""
    if Path(path).is_dir():
        raise MediaError(
            f"cannot write {path}: it is a folder; name a file in it, e.g. {Path(path) / example}"
        )


def check_folder(path: Path) -> None:
    """Raise MediaError unless a file can be created at ``path``: it is no folder, its folder exists
    and is writable."""
    refuse_folder(path, f"out{Path(path).suffix or '.wav'}")
    folder = Path(path).parent
    if not folder.is_dir():
        raise MediaError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"cannot write {path}: folder {folder} is not writable")
