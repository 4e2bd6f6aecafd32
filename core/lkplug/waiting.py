"""Waiting for an event with a timeout without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` returns normally when the task is cancelled in the same loop
step as the awaited event fires: the cancellation is swallowed. A loop around it (wait for data, look
again) then never ends, and whoever cancelled it (``-t`` reached, Ctrl-C, the end of a run) waits
for it forever. ``asyncio.wait`` has no such window."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None = None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds passed (None: no limit). Returns whether it
    is set. Raises ``asyncio.CancelledError`` whenever the waiting task is cancelled."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


async def wait_either(future: asyncio.Future, event: asyncio.Event) -> None:
    """Wait until ``future`` is done or ``event`` is set, leaving ``future`` running (a frame asked for
    stays asked for). Raises ``asyncio.CancelledError`` whenever the waiting task is cancelled.

    Clear ``event`` and look at what it signals *before* calling this: a signal that came while the
    caller was busy is then not lost (clearing it after a wake-up, then waiting, loses one set just
    before)."""
    if future.done() or event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({future, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
