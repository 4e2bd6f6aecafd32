"""Output files written under a temporary name in their folder and renamed when complete.

A sink opens ``OutputFile(path).temp``, and calls ``complete()`` once the file is closed and valid:
the rename (atomic within one folder) puts it under its final name. A process killed mid-write leaves
only a hidden ``.NAME.PID.part`` file, never a partial file under the final name.

A batch holds the renames of one input's outputs (``held_outputs``) and makes them only if that input
ran to its end; a failed or interrupted input leaves nothing. A single run renames at ``close``, so a
Ctrl-C still keeps what was written (as a WAV written so far is valid).
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
    """``path`` (str or Path): the final name. ``temp``: where the sink writes, a hidden file in the
    same folder (so the rename never crosses file systems)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")

    def complete(self) -> None:
        """The file is closed and valid: rename it to its final name (or, in a batch, when the
        input has ended). Raises OSError if the rename fails."""
        held = _held.get()
        if held is None:
            self.commit()
        else:
            held.append(self)

    def commit(self) -> None:
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        """Remove the temporary file (a failed or interrupted output)."""
        self.temp.unlink(missing_ok=True)


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
