"""Output paths: checked before a run starts, so a recording does not learn after an hour of waiting
for a participant that its folder is missing, or that its output cannot be written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .errors import MediaError
from .outputs import temporary_name

# errors that say why a file cannot be written (others, from pseudo file systems, only confuse)
TELLING = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def is_pipe(path) -> bool:
    """Whether an output ``path`` names a pipe as ffmpeg takes it: ``-`` (standard output, which
    ffmpeg reads as ``pipe:1``) or FFmpeg's pipe protocol, ``pipe:`` and ``pipe:N`` (file
    descriptor N). ``./-`` is a file named ``-``."""
    return re.fullmatch(r"-|pipe:\d*", str(path)) is not None


def refuse_folder(path: Path, example: str = "out.wav") -> None:
    """Raise MediaError when ``path`` is an existing folder (``wav:adir``): an output is a file."""
    if os.path.isdir(path):  # False for a name too long to look up (pathlib's is_dir raises then)
        raise MediaError(
            f"cannot write {path}: it is a folder; name a file in it, e.g. {Path(path) / example}"
        )


def check_folder(path: Path) -> None:
    """Raise MediaError unless a file can be written at ``path``: its folder exists and a file can be
    created in it, and ``path`` itself, if it exists, is not a folder and opens for writing.

    Tried for real (a hidden file made and removed in the folder; an existing file opened to append,
    nothing written): permission bits do not tell (root passes ``os.access`` on a read-only file
    system or in /sys), and an output found unwritable only at the first frame fails after joining a
    room and waiting for a participant."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        for parent in (folder, *folder.parents):  # a file where a folder should be says so
            if parent.exists():
                if not parent.is_dir():
                    raise MediaError(f"cannot write {path}: {parent} is a file, not a folder")
                break
        raise MediaError(f"cannot write {path}: folder {folder} does not exist")
    # the output is written under a shorter temporary name and renamed at the end: a name too long
    # for the file system failed only then, after the whole run ("unexpected OSError: [Errno 36]")
    size, limit = len(os.fsencode(path.name)), os.pathconf(folder, "PC_NAME_MAX")
    if size > limit:
        raise MediaError(f"cannot write {path}: its name is {size} bytes; the file system takes {limit}")
    refuse_folder(path, f"out{path.suffix or '.wav'}")
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null): opening may block
        if not os.access(path, os.W_OK):
            raise MediaError(f"cannot write {path}: it is not writable")
        return
    try:
        if path.is_file():
            with open(path, "ab"):  # appending nothing: the file is left as it is
                pass
        else:
            # the probe is named as this output's temporary (.NAME.PID.part): a run killed while it
            # exists leaves a stale temporary that the next run (or the batch) removes, not a stray
            # file (CI saw a batch worker SIGKILLed here leave .lkplug-check-053al7bw in out/)
            probe = temporary_name(path)
            try:
                with open(probe, "xb"):
                    pass
            except FileExistsError:  # this process's own temporary: the folder takes files
                pass
            else:
                probe.unlink()
    except OSError as exc:
        where = f"{path}" if path.is_file() else f"folder {folder}"
        # the system's reason when it says why (permission denied, read-only file system, disk full);
        # /proc answers "no such file" for a new file in a folder that exists and "invalid argument"
        # for an existing file: a second fault that is not one
        why = f" ({exc.strerror})" if exc.errno in TELLING else ""
        raise MediaError(f"cannot write {path}: {where} is not writable{why}") from None
