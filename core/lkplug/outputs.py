"""Output files: written under a temporary name in their folder and renamed when complete.

A sink opens ``OutputFile(path).temp`` and calls ``complete()`` once the file is closed and valid.
``temp`` is a hidden ``.NAME.PID.part`` beside the final name, and the rename is atomic within one
folder: a run that is killed (SIGKILL, a native abort, the machine going down) never leaves a
partial file under a final name, so ``--skip-existing`` can trust what exists. A single run renames
as soon as the sink closes, and a sink closes on every exit path Python sees (the end, an error,
Ctrl-C, SIGTERM): what it wrote so far gets its final name then. In a batch (``held_outputs``) the
rename waits until the input has run to its end, and an interrupted input's outputs are discarded.

What a killed run leaves stays in its ``.part`` file (a WAV's header is kept valid as it goes: rename
it to keep it); the next run that writes the same output removes the ones whose process is gone.
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
        if self.temp != self.path and self._held is None:
            remove_stale([self._target])

    def complete(self) -> None:
        """The file is closed and valid: it gets its final name now, or in a batch once the input
        has ended. Raises OSError if the rename fails."""
        if self._held is not None:
            self._held.append(self)
        else:
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


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written until it is complete: ``.NAME.PID.part`` in the same folder."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def stale(path: Path) -> list[Path]:
    """The temporaries of ``path`` (``.NAME.PID.part``) whose process no longer runs on this machine:
    left by a run that was killed before it could rename them."""
    return _stale([Path(path)])


def remove_stale(paths) -> None:
    """Remove the stale temporaries of ``paths`` (final names): one listing per folder."""
    for old in _stale([Path(path) for path in paths]):
        old.unlink(missing_ok=True)


def _stale(paths: list[Path]) -> list[Path]:
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(path.name)
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
            if final in finals and pid.isdigit() and not _running(int(pid)):
                found.append(folder / name)
    return found


def bytes_written(path: str | os.PathLike) -> int:
    """How much of ``path`` a run has written so far (bytes): its temporary's size while the run
    goes on, the file's once it has its final name; 0 before either exists. For a script (or a
    test) that waits for a recording to get going."""
    path = Path(path)
    for candidate in (path, *sorted(path.parent.glob(f".{glob.escape(path.name)}.*.part"))):
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
    def commit(self) -> None:
        for output in self:
            output.commit()

    def discard(self) -> None:
        for output in self:
            output.discard()


@contextmanager
def held_outputs() -> Iterator[HeldOutputs]:
    """Collect the outputs completed inside (this thread and the tasks it starts); the caller then
    calls ``commit()`` or ``discard()`` on what it yields."""
    held = HeldOutputs()
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)
