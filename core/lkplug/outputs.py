"""Output files of a batch: written under a temporary name in their folder and renamed when complete.

A sink opens ``OutputFile(path).temp`` and calls ``complete()`` once the file is closed and valid. In a
batch (``held_outputs``) ``temp`` is a hidden ``.NAME.PID.part`` beside the final name, and the rename
(atomic within one folder) happens only once the input has run to its end: a killed or interrupted
batch never leaves a partial file under a final name, and ``--skip-existing`` can trust what exists.
A single run writes to the final name itself, so what it wrote stays there even if the process is
killed or aborts (a WAV's header is kept valid as it goes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

# the outputs completed while a batch holds them (None: rename at once)
_held: ContextVar[list[OutputFile] | None] = ContextVar("lkplug_held_outputs", default=None)


class OutputFile:
    """``path`` (str or Path): the final name. ``temp``: where the sink writes; in a batch a hidden
    file in the same folder (so the rename never crosses file systems), else ``path`` itself."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._held = _held.get()
        self.temp = self.path if self._held is None else temporary_name(self.path)

    def complete(self) -> None:
        """The file is closed and valid; in a batch it gets its final name once the input has ended."""
        if self._held is not None:
            self._held.append(self)

    def commit(self) -> None:
        """Rename to the final name. Raises OSError if that fails."""
        if self.temp != self.path:
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Remove what was written (an output that failed, or a batch input that was interrupted)."""
        self.temp.unlink(missing_ok=True)


def temporary_name(path: Path) -> Path:
    """Where a batch writes ``path`` until it is complete: ``.NAME.PID.part`` in the same folder."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


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
