"""The frame contract as a property (issue 16): random chains of built-in and test stages, random
frame sizes, random ``-t`` and random mid-stream format changes. Whatever the draw:

- a length-preserving chain hands on exactly as many samples per stream as came in (``delay:ms=20``
  adds exactly its delay to each stream, which also shows that each stream started fresh);
- every fixed-size stage saw only exact frames (``fixed`` raises on any other size, ``apm`` would
  abort the process);
- each sink saw only the kinds it accepts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from engine_hooks import DataFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkplug import AudioContract, AudioFrame, Built, Pipeline, Registry, Sink, Source, build

HERE = Path(__file__).resolve().parent
REGISTRY = Registry.load([str(HERE / "contract_hooks.py"), str(HERE / "engine_hooks.py")])
DELAY_MS = 20
STAGES = [
    "gain:db=-3",
    "fixed:ms=10",
    "fixed:ms=7.5",
    "fixed:ms=100",
    "regroup",
    "duck",
    "remix:channels=1",
    "apm",
    f"delay:ms={DELAY_MS}",
]


class Segments(Source):
    """Audio in the given segments (each its own rate, channels and sample format, so each
    boundary is a format change), with a data frame beside each audio frame."""

    def __init__(self, segments):
        self.segments = segments

    def probe(self):
        return {"audio": None, "data": None}

    def frames_in_order(self):
        time = 0.0
        for rate, channels, sample_format, sizes in self.segments:
            position = round(time * rate)
            for size in sizes:
                data = np.full((size, channels), 0.1, np.float32)
                if sample_format == "s16":
                    data = (data * 32767).astype(np.int16)
                frame = AudioFrame(data, rate, position)
                yield frame
                yield DataFrame(b"d", frame.time)
                position += size
            time = position / rate

    async def frames(self):
        for frame in self.frames_in_order():
            yield frame


class Record(Sink):
    def __init__(self, accepts):
        self.accepts = accepts
        self.frames, self.kinds = [], set()

    def write(self, frame):
        self.kinds.add(frame.kind)
        self.frames.append(frame)


segment = st.tuples(
    st.sampled_from([16000, 32000, 48000]),
    st.integers(1, 2),
    st.sampled_from(["s16", "flt"]),
    st.lists(st.integers(1, 3000), min_size=1, max_size=6),
)


def distinct_rates(segments):
    return all(a[0] != b[0] for a, b in zip(segments, segments[1:], strict=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(segment, min_size=1, max_size=3).filter(distinct_rates),
    stages=st.lists(st.sampled_from(STAGES), max_size=4),
    cut=st.one_of(st.none(), st.floats(0.001, 1.0)),
)
def test_lengths_exact_frames_and_accepted_kinds_hold_for_random_chains(segments, stages, cut):
    source = Segments(segments)
    total = sum(sum(sizes) / rate for rate, _, _, sizes in segments)
    duration = None if cut is None else cut * total
    audio = Built("audio", Record({"audio": AudioContract()}))
    data = Built("data", Record({"data": None}))
    processors = [build(REGISTRY, "processor", spec) for spec in stages]
    run = Pipeline(Built("segments", source), processors, [audio, data], REGISTRY, duration=duration)
    asyncio.run(run.run())  # `fixed` raises on a frame of any other size

    assert audio.obj.kinds <= {"audio"} and data.obj.kinds <= {"data"}
    # what came in per stream, in order, after -t as the engine cuts it; each stream has its own rate
    delay = sum(spec.startswith("delay") for spec in stages)
    expected: list[list[int]] = []
    for frame in source.frames_in_order():
        kept = frame.until(duration) if duration is not None else frame
        if frame.kind == "audio" and kept is not None:
            if not expected or expected[-1][0] != frame.sample_rate:
                expected.append([frame.sample_rate, delay * round(DELAY_MS * frame.sample_rate / 1000)])
            expected[-1][1] += kept.samples
    got: list[list[int]] = []
    for frame in audio.obj.frames:
        if not got or got[-1][0] != frame.sample_rate:
            got.append([frame.sample_rate, 0])
        got[-1][1] += frame.samples
    assert got == expected
