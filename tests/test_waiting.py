"""A cancellation that comes in the same loop step as the awaited event must end the wait: Python
3.11's asyncio.wait_for swallows it, and a loop around such a wait (the mix waiting for frames, a
room source looking for participants) then never ends, so a run with -t 6 did not end."""

from __future__ import annotations

import asyncio

import pytest

from lkplug.fanin import _Wake
from lkplug.waiting import wait_either, wait_event


async def test_a_cancel_with_the_event_set_is_not_swallowed():
    event = asyncio.Event()
    task = asyncio.ensure_future(wait_event(event, 5.0))
    await asyncio.sleep(0)  # it waits
    event.set()
    task.cancel()  # in the same loop step
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_mix_wait_loop_ends_when_cancelled_as_data_comes():
    wake = _Wake()

    async def loop():  # the mix's frames(): wait for data, look again
        while True:
            await wake.wait(0.05)

    task = asyncio.ensure_future(loop())
    await asyncio.sleep(0)
    wake.notify()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done and task.cancelled()


async def test_wait_event_times_out_and_sees_the_event():
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_wait_either_returns_on_the_event_and_leaves_the_future_running():
    event, future = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(wait_either(future, event))
    await asyncio.sleep(0)
    event.set()
    await asyncio.wait_for(task, 2.0)
    assert not future.done()  # a frame asked for stays asked for
    event.clear()
    task = asyncio.ensure_future(wait_either(future, event))
    await asyncio.sleep(0)
    task.cancel()  # a cancel ends the wait, not the future
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not future.cancelled()
