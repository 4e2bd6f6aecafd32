"""Output files: written under a temporary name in their folder and renamed when complete.

A sink opens ``OutputFile(path).temp`` and calls ``complete()`` once the file is closed and valid.
``temp`` is a hidden ``.NAME.PID.part`` beside the final name, and the rename is atomic within one
folder: a run that is killed (SIGKILL, a native abort, the machine going down) never leaves a
partial file under a final name, so ``--skip-existing`` can trust what exists. The run holds its
outputs (``held_outputs``) and decides when it ends: a single run renames them when its pipeline
ended by itself or by Ctrl-C/SIGTERM (ffmpeg's ``q``: what was written so far is a valid file), never
after a failure; a batch renames an input's outputs only when that input ran to its end, and an
interrupted input's outputs are discarded.

What a killed or failed run leaves stays in its ``.part`` file (a WAV's header is kept valid as it
goes: rename it to keep it); the next run that writes the same output removes the ones whose process
is gone.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

# the outputs completed while a batch holds them (None: rename at once)
_held: ContextVar[list[OutputFile] | None] = ContextVar("lkplug_held_outputs", default=None)


class OutputFile:
    """``path`` (str or Path): the final name. ``temp``: where the sink writes, a hidden file in the
    same folder (so the rename never crosses file systems); ``path`` itself when it is not a regular
    file that can be renamed over (``-``, a device such as /dev/null, a named pipe).

    Making one removes the stale temporaries of ``path`` that killed runs left (see ``stale``); in a
    batch the parent has done that once per folder (``remove_stale``), not once per file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._held = _held.get()
        # a link to a file is written through, as ffmpeg -y does: the file it names is replaced
        self._target = Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path
        self.temp = self.path if _special(self.path) else temporary_name(self._target)
        self.completed = False
        if self._held is not None:
            self._held.append(self)
        if self.temp != self.path and (self._held is None or self._held.tidy_stale):
            remove_stale([self._target])

    def complete(self) -> None:
        """The file is closed and valid: it gets its final name now, or, when the run holds its
        outputs, once the run has decided. Raises OSError if the rename fails."""
        self.completed = True
        if self._held is None:
            self.commit()

    def commit(self) -> None:
        """Rename to the final name. Raises OSError if that fails."""
        if self.temp != self.path:
            try:  # a file written over keeps its mode, as one that ffmpeg -y rewrites in place
                os.chmod(self.temp, stat.S_IMODE(os.stat(self._target).st_mode))
            except FileNotFoundError:
                pass
            os.replace(self.temp, self._target)

    def discard(self) -> None:
        """Remove what was written (an output that failed, or a batch input that was interrupted)."""
        if self.temp != self.path:
            self.temp.unlink(missing_ok=True)


# a file name's limit on Linux file systems (ext4, xfs, btrfs, tmpfs): bytes, not characters
NAME_MAX = 255
# room for ".", ".PID.part" and a PID of up to 10 digits (Linux allows 2**22): a temporary's name
# must fit whatever the PID, so that one name has one temporary stem
_STEM_MAX = NAME_MAX - len("..part") - 10 - 1
_HASH_CHARS = 16  # of sha256's hex digest: what tells shortened names with one beginning apart


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written until it is complete: ``.NAME.PID.part`` in the same folder; for a
    name too long for that (a final name of up to 255 bytes is legal, as ffmpeg writes it), NAME
    is its first bytes and a hash of the whole name (``_temporary_stem``)."""
    return path.with_name(f".{_temporary_stem(path.name)}.{os.getpid()}.part")


def _temporary_stem(name: str) -> str:
    """``name``, or when ``.NAME.PID.part`` would exceed NAME_MAX bytes: its first bytes (whole
    UTF-8 characters), ``~`` and 16 hex digits of the SHA-256 of the whole name."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= _STEM_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
    head = encoded[: _STEM_MAX - 1 - _HASH_CHARS].decode("utf-8", "ignore")  # a cut character dropped
    return f"{head}~{digest}"


def stale(path: Path) -> list[Path]:
    """The temporaries of ``path`` (``.NAME.PID.part``) whose process no longer runs on this machine:
    left by a run that was killed before it could rename them."""
    return _stale([Path(path)])


def remove_stale(paths) -> None:
    """Remove the stale temporaries of ``paths`` (final names): one listing per folder."""
    for old in _stale([Path(path) for path in paths]):
        old.unlink(missing_ok=True)


def remove_temporaries(paths) -> None:
    """Remove every temporary of ``paths`` (final names), whatever process wrote it: those of a batch's
    inputs that a second Ctrl-C cut short on a cluster, whose workers (elsewhere, still alive) would
    remove them only after lkplug has exited."""
    for old in _stale([Path(path) for path in paths], running_too=True):
        old.unlink(missing_ok=True)


def _stale(paths: list[Path], running_too: bool = False) -> list[Path]:
    by_folder: dict[Path, set[str]] = {}  # the temporary stems of the final names, by folder
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(_temporary_stem(path.name))
    found = []
    for folder, finals in by_folder.items():
        try:
            names = os.listdir(folder)
        except OSError:  # not made yet: nothing in it
            continue
        for name in names:
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            final, _, pid = name[1 : -len(".part")].rpartition(".")
            if final in finals and pid.isdigit() and (running_too or not _running(int(pid))):
                found.append(folder / name)
    return found


def bytes_written(path: str | os.PathLike) -> int:
    """How much of ``path`` a run has written so far (bytes): its temporary's size while the run
    goes on, the file's once it has its final name; 0 before either exists. For a script (or a
    test) that waits for a recording to get going."""
    path = Path(path)
    temporaries = path.parent.glob(f".{glob.escape(_temporary_stem(path.name))}.*.part")
    for candidate in (path, *sorted(temporaries)):
        try:
            return candidate.stat().st_size
        except OSError:  # not there, or renamed in between
            continue
    return 0


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's
        return True
    return True


def _special(path: Path) -> bool:
    """Written in place: stdout (``-``) or an existing file that is not a regular one."""
    if str(path) == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class HeldOutputs(list):
    """The OutputFiles made while a run holds its outputs."""

    def __init__(self, tidy_stale: bool):
        super().__init__()
        self.tidy_stale = tidy_stale

    def commit(self) -> list[Path]:
        """The run ended well (or was stopped): completed outputs get their final names. A sink that
        never closed left no valid file: its temporary is treated as ``keep_partial`` treats one, and
        the kept ones are returned. Raises OSError if a rename fails."""
        for output in self:
            if output.completed:
                output.commit()
        return _keep_partial(output for output in self if not output.completed)

    def discard(self) -> None:
        """The run was interrupted (a batch input): remove every temporary."""
        for output in self:
            output.discard()

    def keep_partial(self) -> list[Path]:
        """The run failed: nothing gets a final name. Empty temporaries are removed; the others
        stay (an hour of a recording is not thrown away) and are returned, to be named to the user."""
        return _keep_partial(self)


def _keep_partial(outputs) -> list[Path]:
    kept = []
    for output in outputs:
        if output.temp == output.path:
            continue
        try:
            empty = output.temp.stat().st_size == 0
        except OSError:  # never made, or removed by its sink
            continue
        if empty:
            output.discard()
        else:
            kept.append(output.temp)
    return kept


@contextmanager
def held_outputs(tidy_stale: bool = True) -> Iterator[HeldOutputs]:
    """Collect the outputs made inside (this thread and the tasks it starts); the caller then calls
    ``commit()``, ``discard()`` or ``keep_partial()`` on what it yields. ``tidy_stale``: each
    output removes the stale temporaries of its name as it is made (False in a batch's worker: the
    parent has done it once per folder)."""
    held = HeldOutputs(tidy_stale)
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)
