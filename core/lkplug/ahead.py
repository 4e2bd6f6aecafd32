"""Run a plain generator on a thread of its own, a few items ahead of an async consumer.

A source that decodes (FFmpeg, libsndfile) spends most of its time in C code that releases the GIL;
on its own thread that work overlaps the chain's (numpy, soxr and libswresample release it too), so
a run uses a second core the way the ffmpeg CLI does with its decoder and filter threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

DEPTH = 4  # items decoded ahead of the consumer (bounded: a fast decoder waits, memory stays flat)
_POLL = 0.05  # seconds between looks at the stop flag while the consumer is behind
JOIN_SECONDS = 5.0  # longest wait in stop() for the item in hand (a huge picture) to finish


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


class Ahead:
    """``async for item in ahead.items(generator)``: ``generator`` runs on a daemon thread; what it
    raises is raised in the consumer. ``stop()`` ends the thread (at its next item) and waits for it,
    so whatever the generator reads can be closed afterwards."""

    def __init__(self, depth: int = DEPTH):
        self.depth = depth
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def items(self, generator: Iterator[Any]) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue = asyncio.Queue()
        slots = threading.Semaphore(self.depth)
        stopping = self._stopping = threading.Event()

        def post(item) -> None:
            try:
                loop.call_soon_threadsafe(ready.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is waiting
                stopping.set()

        def work() -> None:
            end = _End()
            try:
                for item in generator:
                    while not slots.acquire(timeout=_POLL):
                        if stopping.is_set():
                            return
                    if stopping.is_set():
                        return
                    post(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                end = _End(exc)
            finally:
                generator.close()  # on this thread, which owns it
                post(end)

        self._thread = threading.Thread(target=work, name="lkplug-ahead", daemon=True)
        self._thread.start()
        try:
            while True:
                item = await ready.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                slots.release()
                yield item
        finally:
            stopping.set()

    async def stop(self) -> None:
        """End the thread and wait until it has let go of the generator (a few ms: one item)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_SECONDS)
