"""Using lkplug from Python: processor chains on frames or numpy arrays you push.

    chain = lkplug.open_chain("gain:db=-6", "resample:rate=16000")
    for frame in my_frames:
        for out in chain.push(frame):
            ...
    tail = chain.flush()

    out, rate = lkplug.process(samples, 48000, "gain:db=-6", "resample:rate=16000")

Whole pipelines (file or room in, files or rooms out) are ``lkplug.Pipeline.from_specs``.
"""

from __future__ import annotations

import numpy as np

from .chain import Built, Chain
from .engine import build
from .frames import AudioFrame
from .registry import Registry


class OpenChain:
    """Processors planned against the first frame pushed; converters inserted as needed."""

    def __init__(self, processors: list[Built], registry: Registry | None = None):
        self.processors = processors
        self.registry = registry
        self._chains: dict[str, Chain] = {}

    def _chain_for(self, frame) -> Chain:
        chain = self._chains.get(frame.kind)
        if chain is None or not chain.accepts_frame(frame):
            if chain is not None:
                raise ValueError(f"frame format changed from {chain.in_format} to {frame.format}")
            chain = self._chains[frame.kind] = Chain.plan(
                frame.kind, frame.format, self.processors, self.registry
            )
        return chain

    @property
    def plan(self) -> list[tuple[str, str]]:
        return [row for chain in self._chains.values() for row in chain.describe()]

    def push(self, frame) -> list:
        return _sync(self.apush(frame))

    async def apush(self, frame) -> list:
        return await self._chain_for(frame).push(frame)

    def flush(self) -> list:
        return _sync(self.aflush())

    async def aflush(self) -> list:
        out = []
        for chain in self._chains.values():
            out += await chain.flush()
        return out


def open_chain(*specs: str, registry: Registry | None = None) -> OpenChain:
    registry = registry or Registry.load()
    return OpenChain([build(registry, "processor", spec) for spec in specs], registry)


def process(
    samples: np.ndarray,
    rate: int,
    *specs: str,
    registry: Registry | None = None,
    frame_size: int | None = None,
) -> tuple[np.ndarray, int]:
    """Run ``samples`` ((n, channels) or (n,), int16 or float32) through a chain in one call, as one
    frame or in frames of ``frame_size`` samples.

    Returns the processed samples (2-D) and their sample rate.
    """
    data = np.ascontiguousarray(samples.reshape(-1, 1) if samples.ndim == 1 else samples)
    chain = open_chain(*specs, registry=registry)
    step = frame_size or max(len(data), 1)
    frames = []
    for start in range(0, len(data), step) or [0]:  # an empty input is one empty frame
        frames += chain.push(AudioFrame(data[start : start + step], rate, start))
    frames += chain.flush()
    if not frames:
        out_format = chain._chains["audio"].out_format
        return np.zeros((0, out_format.channels), data.dtype), out_format.rate
    return np.concatenate([f.data for f in frames]), frames[0].sample_rate


def _sync(coroutine):
    """Run a coroutine that never suspends (a chain of plain processors) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("this chain has async processors: use apush()/aflush() inside an event loop")
