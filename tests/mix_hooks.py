"""A live room without a network, for the fan-in tests: ``-p tests/mix_hooks.py --source room``.
Participants as (identity, Hz, joins at s, leaves at s); each stream gives 10 ms frames of s16 at
48 kHz as the SDK does, each frame handed on when its 10 ms have passed (real time), with its own
timestamps counting from 0, as ``track:`` gives them. ``stall=S``: at S s the whole process stops for
0.6 s (a loaded machine starving lkplug): the frames due meanwhile are handed on at once after it."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from lkplug import AudioFormat, AudioFrame, Component, Param, Source, hookimpl

RATE = 48000
FRAME = RATE // 100


class Speaker(Source):
    live = True

    def __init__(self, freq: float, seconds: float, stall: float = 0.0):
        self.freq, self.seconds, self.stall = freq, seconds, stall

    def probe(self) -> dict:
        return {"audio": AudioFormat(RATE, 1, "s16", FRAME)}

    async def frames(self):
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(round(self.seconds * 100)):
            await asyncio.sleep(max(0.0, start + (index + 1) / 100 - loop.time()))
            if self.stall and index == round(self.stall * 100):
                time.sleep(0.6)  # blocks the event loop, as a starved process is
            t = (np.arange(FRAME) + index * FRAME) / RATE
            data = 0.5 * 32767 * np.sin(2 * np.pi * self.freq * t)
            yield AudioFrame(data.astype(np.int16).reshape(-1, 1), RATE, index * FRAME)


class Room(Source):
    live = True
    fans_out = True

    def __init__(self, people: str, stall: float = 0.0):
        self.people = [item.split(":") for item in people.split("+")]
        self.stall = stall

    def probe(self) -> dict:
        return {"audio": AudioFormat(RATE, 1, "s16", FRAME)}

    async def instances(self):
        loop = asyncio.get_running_loop()
        start = loop.time()
        people = sorted(self.people, key=lambda p: float(p[2]))
        for index, (identity, freq, joins, leaves) in enumerate(people):
            await asyncio.sleep(max(0.0, start + float(joins) - loop.time()))
            stall = self.stall - float(joins) if self.stall > float(joins) and not index else 0.0
            yield {"identity": identity}, Speaker(float(freq), float(leaves) - float(joins), stall)


@hookimpl
def lkplug_sources():
    return [
        Component(
            "room",
            Room,
            "participants IDENTITY:HZ:JOIN_S:LEAVE_S joined by +",
            params=(
                Param("people", str, "alice:440:0:60+bob:660:2:4"),
                Param("stall", float, 0.0, "seconds in: the process stops for 0.6 s (0: never)", min=0.0),
            ),
            positional="people",
        )
    ]
