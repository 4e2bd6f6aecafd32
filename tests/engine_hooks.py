"""Components for the engine tests, loaded the way users load theirs: ``-p tests/engine_hooks.py``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lkplug import (
    AudioContract,
    AudioFormat,
    AudioFrame,
    Component,
    Frame,
    Param,
    Processor,
    Sink,
    Source,
    hookimpl,
)


class Probe16kMono(Processor):
    """Wants 16 kHz mono float; remembers what it was given."""

    accepts = {"audio": AudioContract(rates=(16000,), channels=(1,), sample_formats=("flt",))}

    def __init__(self):
        self.seen: list[AudioFormat] = []

    def process(self, frame):
        self.seen.append(frame.format)
        return [frame]


class Needs10ms(Processor):
    accepts = {"audio": AudioContract(frame_ms=10)}

    def __init__(self):
        self.sizes: list[int] = []

    def process(self, frame):
        self.sizes.append(frame.samples)
        return [frame]


class Wants48k(Processor):
    accepts = {"audio": AudioContract(rates=(48000,))}

    def process(self, frame):
        return [frame]


class Explode(Processor):
    def __init__(self, after: int = 0):
        self.left = after

    def process(self, frame):
        if self.left == 0:
            raise ValueError("kaboom")
        self.left -= 1
        return [frame]


class AsyncHalf(Processor):
    async def process(self, frame):
        await asyncio.sleep(0)
        return [frame.replace(data=(frame.data.astype(np.float32) * 0.5).astype(frame.data.dtype))]


@dataclass(frozen=True, eq=False)
class DataFrame(Frame):
    """A frame of a kind no audio stage takes (stands in for video or data)."""

    payload: bytes
    at: float
    kind: ClassVar[str] = "data"

    @property
    def time(self):
        return self.at

    @property
    def format(self):
        return "bytes"


class RateChange(Source):
    """One second at 48 kHz, then one second at 16 kHz: a stream whose format changes."""

    def probe(self):
        return {"audio": AudioFormat(48000, 1, "s16")}

    async def frames(self):
        position = 0.0
        for rate in (48000, 16000):
            for _ in range(10):
                n = rate // 10
                yield AudioFrame(np.full((n, 1), 1000, np.int16), rate, round(position * rate))
                position += 0.1


class WithData(Source):
    def probe(self):
        return {"audio": AudioFormat(48000, 1, "s16"), "data": None}

    async def frames(self):
        for i in range(3):
            yield AudioFrame(np.ones((480, 1), np.int16), 48000, i * 480)
            yield DataFrame(b"x%d" % i, i * 0.01)


class Collect(Sink):
    # audio of any format, and data frames as they come (a kind with no contract to convert to)
    accepts = {"audio": AudioContract(), "data": None}

    def __init__(self):
        self.frames: list = []
        self.closed = False

    async def write(self, frame):
        await asyncio.sleep(0)
        self.frames.append(frame)

    def close(self):
        self.closed = True


class Stall(Collect):
    """Stalls on its first frame (as a sink joining a room does) and notes when frames arrive."""

    def __init__(self, seconds: float = 0.5):
        super().__init__()
        self.seconds = seconds
        self.times: list[float] = []

    async def write(self, frame):
        if not self.frames:
            await asyncio.sleep(self.seconds)
        self.times.append(time.monotonic())
        await super().write(frame)


class Tones(Source):
    """Fans out: one short tone stream per frequency, as track:* does per participant."""

    fans_out = True
    fields = ("identity", "freq")

    def __init__(self, freqs: str, fail: str = "", linger: bool = False):
        self.freqs = [f for f in freqs.split("+") if f]
        self.fail, self.linger = fail, linger

    async def instances(self):
        from lkplug_audio.tone import ToneSource

        for freq in self.freqs:
            tone = ToneSource(float(freq), duration=0.5)
            if freq == self.fail:
                tone.frames = _failing_frames
            yield {"identity": f"t{freq}", "freq": freq}, tone
        if self.linger:  # as a room does: more streams may come, until stopped
            await asyncio.Event().wait()


async def _failing_frames():
    raise OSError("stream broke")
    yield  # an async generator


@hookimpl
def lkplug_processors():
    return [
        Component("probe16k", Probe16kMono, "wants 16 kHz mono float"),
        Component("needs10ms", Needs10ms, "wants 10 ms frames"),
        Component("wants48k", Wants48k, "wants 48 kHz"),
        Component("explode", Explode, "fails", params=(Param("after", int, 0),)),
        Component("asynchalf", AsyncHalf, "async -6 dB"),
    ]


@hookimpl
def lkplug_sources():
    return [
        Component("ratechange", RateChange, "48 kHz then 16 kHz"),
        Component("withdata", WithData, "audio and data frames"),
        Component(
            "tones",
            Tones,
            "one tone stream per frequency (fan-out)",
            params=(Param("freqs", str), Param("fail", str, ""), Param("linger", bool, False)),
            positional="freqs",
        ),
    ]


@hookimpl
def lkplug_sinks():
    return [
        Component("collect", Collect, "keeps frames in memory"),
        Component("stall", Stall, "stalls on its first frame", params=(Param("seconds", float, 0.5),)),
    ]
