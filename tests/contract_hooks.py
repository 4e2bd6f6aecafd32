"""Components for the frame-contract tests, loaded as users load theirs: ``-p tests/contract_hooks.py``.

Some follow the guide (a sink like ``Peaks``, its ``Delay``); some break the contract on purpose
(``returnnone``, ``wrongrate``, ``notaframe``, ``sysexit``, ``interrupt``, ``block``) to check that the
engine names them; one (``duck``) matches the documented shape without lkplug's base classes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import numpy as np

from lkplug import (
    AudioContract,
    AudioFormat,
    AudioFrame,
    Component,
    Param,
    Processor,
    Sink,
    Source,
    hookimpl,
)


class Peaks(Sink):
    """The guide's audio-only sink: the peak of every frame it is given, and every kind it saw."""

    accepts = {"audio": AudioContract(sample_formats=("flt",))}
    instances: list = []  # every object built in this process, for in-process tests

    def __init__(self):
        self.peaks, self.kinds, self.started = [], set(), None
        Peaks.instances.append(self)

    def start(self, formats):
        self.started = dict(formats)
        print(f"peaks: start {sorted(formats)}", file=sys.stderr)

    def write(self, frame):
        self.kinds.add(frame.kind)
        self.peaks.append(float(np.abs(frame.data).max()))

    def close(self):
        peak = max(self.peaks, default=0.0)
        print(f"peaks: max {peak:.4f} kinds {','.join(sorted(self.kinds))}", file=sys.stderr)


class Delay(Processor):
    """The guide's ``Delay`` (CONTRIBUTING.md), unchanged."""

    accepts = {"audio": AudioContract(sample_formats=("flt",))}

    def __init__(self, ms: float = 100.0):
        self.ms = ms
        self.held = None
        self.rate = self.next_timestamp = 0

    def process(self, frame):
        if self.held is None:
            self.held = np.zeros((round(self.ms * frame.sample_rate / 1000), frame.channels), np.float32)
        joined = np.concatenate([self.held, frame.data])
        out, self.held = joined[: frame.samples], joined[frame.samples :]
        self.rate, self.next_timestamp = frame.sample_rate, frame.timestamp + frame.samples
        return [frame.replace(data=out)]

    def flush(self):
        if self.held is None or not len(self.held):
            return []
        return [AudioFrame(self.held, self.rate, self.next_timestamp)]


class Fixed(Processor):
    """Wants frames of exactly ``ms``; keeps length; records every size it was given."""

    def __init__(self, ms: float = 10.0):
        self.accepts = {"audio": AudioContract(frame_ms=ms)}
        self.ms = ms
        self.sizes: list[tuple[int, int]] = []  # (samples, expected)

    def process(self, frame):
        self.sizes.append((frame.samples, round(frame.sample_rate * self.ms / 1000)))
        if frame.samples != round(frame.sample_rate * self.ms / 1000):
            raise ValueError(f"got {frame.samples} samples, not {self.ms} ms")
        return [frame]


class Regroup(Processor):
    """Keeps length but not frame sizes (passes on two thirds of what it holds, keeps the rest) while
    inheriting ``output_format``: what a stage after it is handed has no fixed size."""

    def __init__(self):
        self.held, self.rate, self.start = None, 0, 0

    def process(self, frame):
        if self.held is None:
            self.held, self.start = frame.data[:0], frame.timestamp
        data, self.rate = np.concatenate([self.held, frame.data]), frame.sample_rate
        cut = len(data) * 2 // 3
        out, self.held = AudioFrame(data[:cut], self.rate, self.start), data[cut:]
        self.start += cut
        return [out] if cut else []

    def flush(self):
        held, self.held = self.held, None
        return [] if held is None or not len(held) else [AudioFrame(held, self.rate, self.start)]


class Switch(Source):
    """``first`` seconds at ``rate1`` then ``second`` seconds at ``rate2``, mono float, in frames of
    ``frame`` samples: a stream whose format changes mid-way."""

    def __init__(self, rate1=48000, rate2=16000, first=0.2, second=0.2, frame=480):
        self.parts = [(rate1, round(first * rate1)), (rate2, round(second * rate2))]
        self.frame = frame

    def probe(self):
        return {"audio": AudioFormat(self.parts[0][0], 1, "flt")}

    async def frames(self):
        for rate, count in self.parts:
            for start in range(0, count, self.frame):
                n = min(self.frame, count - start)
                yield AudioFrame(np.full((n, 1), 0.25, np.float32), rate, start)


class Duck:
    """A processor in the documented shape, subclassing nothing: no bind, flush or output_format."""

    accepts = {"audio": AudioContract()}

    def process(self, frame):
        return [frame]


class DuckSink:
    accepts = {"audio": AudioContract()}

    def write(self, frame):
        pass


class NotASink:
    """Has ``accepts`` but no ``write``: a mistake that must name the component."""

    accepts = {"audio": AudioContract()}


# faulty on purpose --------------------------------------------------------------------------------


class Faulty(Processor):
    """Passes ``after`` frames through untouched, then misbehaves as ``how`` says."""

    def __init__(self, how: str, after: int = 50):
        self.how, self.left = how, after

    def process(self, frame):
        if self.left > 0:
            self.left -= 1
            return [frame]
        if self.how == "none":
            return None
        if self.how == "wrongrate":  # says 44.1 kHz where output_format promised the input's rate
            return [AudioFrame(frame.data, 44100, frame.timestamp)]
        if self.how == "notaframe":
            return ["not a frame"]
        if self.how == "exit":
            sys.exit()
        if self.how == "exitmsg":
            sys.exit("faulty gave up")
        if self.how == "interrupt":
            raise KeyboardInterrupt
        if self.how == "abort":  # as a native library does (the LiveKit SDK's Rust panics did)
            os.abort()
        if self.how == "block":
            print("faulty: blocking", file=sys.stderr, flush=True)
            threading.Event().wait()  # blocks the thread that calls it, forever
        raise ValueError(self.how)


class AsyncBlock(Processor):
    """An async stage that awaits forever after ``after`` frames."""

    def __init__(self, after: int = 50):
        self.left = after

    async def process(self, frame):
        if self.left > 0:
            self.left -= 1
            return [frame]
        print("asyncblock: blocking", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


@hookimpl
def lkplug_processors():
    return [
        Component("delay", Delay, "the guide's delay", params=(Param("ms", float, 100.0),), positional="ms"),
        Component("fixed", Fixed, "wants exact frames", params=(Param("ms", float, 10.0),), positional="ms"),
        Component("regroup", Regroup, "keeps length, not frame sizes"),
        Component("duck", Duck, "documented shape, no base class"),
        Component(
            "faulty",
            Faulty,
            "misbehaves after a number of frames",
            params=(Param("how", str), Param("after", int, 50)),
            positional="how",
        ),
        Component("asyncblock", AsyncBlock, "awaits forever", params=(Param("after", int, 50),)),
    ]


@hookimpl
def lkplug_sources():
    return [
        Component(
            "switch",
            Switch,
            "48 kHz then 16 kHz",
            params=(
                Param("rate1", int, 48000),
                Param("rate2", int, 16000),
                Param("first", float, 0.2),
                Param("second", float, 0.2),
                Param("frame", int, 480),
            ),
        )
    ]


@hookimpl
def lkplug_sinks():
    return [
        Component("peaks", Peaks, "peak per frame (audio only)"),
        Component("ducksink", DuckSink, "documented shape, no base class"),
        Component("notasink", NotASink, "no write()"),
    ]
