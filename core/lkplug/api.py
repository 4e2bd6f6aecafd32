"""Using lkplug from Python: processor chains on frames or numpy arrays you push.

    chain = lkplug.open_chain("gain:db=-6", "resample:rate=16000")
    for frame in my_frames:
        for out in chain.push(frame):
            ...
    tail = chain.flush()

    out, rate = lkplug.process(samples, 48000, "gain:db=-6", "resample:rate=16000")

Arrays may be what numpy and soundfile give: float64, float32, int32 or int16, ``(samples, channels)``
or 1-D mono; they are converted at the edge (float to float32, int32 to float32 at full scale).

Whole pipelines (file or room in, files or rooms out) are ``lkplug.Pipeline.from_specs``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .chain import Built, Chain
from .engine import build
from .errors import UsageError
from .frames import AudioFrame
from .registry import Registry

MAX_CHANNELS = 64  # more than any layout FFmpeg names: a wider array is channels-first by mistake
INT32_SCALE = 2.0**31


def as_samples(samples) -> np.ndarray:
    """``samples`` as a (samples, channels) int16 or float32 array. float64 (numpy's and soundfile's
    default) becomes float32; int32 becomes float32 at full scale 1.0; 1-D is mono. Raises UsageError
    for an array that cannot be (samples, channels), naming the shape expected and the one given."""
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    if data.ndim != 2 or data.shape[1] > MAX_CHANNELS:
        hint = "; channels first? pass samples.T" if data.ndim == 2 and data.shape[0] <= MAX_CHANNELS else ""
        raise UsageError(
            f"audio must be an array of shape (samples, channels) with at most {MAX_CHANNELS} channels,"
            f" or (samples,) for mono; got shape {data.shape}{hint}"
        )
    if data.dtype in (np.int16, np.float32):
        return np.ascontiguousarray(data)
    if data.dtype.kind == "f":
        return np.ascontiguousarray(data, dtype=np.float32)
    if data.dtype == np.int32:
        return np.ascontiguousarray(data / np.float32(INT32_SCALE), dtype=np.float32)
    raise UsageError(f"audio samples must be float, int16 or int32; got {data.dtype}")


def _as_dtype(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Output samples back in the caller's sample type (the inverse of ``as_samples``)."""
    if data.dtype == dtype:
        return data
    if data.dtype == np.int16:
        data = data.astype(np.float32) / np.float32(32768.0)
    if dtype == np.int32:
        return np.clip(np.rint(data.astype(np.float64) * INT32_SCALE), -INT32_SCALE, INT32_SCALE - 1).astype(
            np.int32
        )
    return data.astype(dtype)


class OpenChain:
    """Processors planned against the first frame pushed; converters inserted as needed."""

    def __init__(self, processors: list[Built], registry: Registry | None = None):
        self.processors = processors
        self.registry = registry
        self._chains: dict[str, Chain] = {}
        self._next: dict[int, int] = {}  # rate -> timestamp of the next array pushed

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

    def push(self, frame, rate: int | None = None) -> list:
        """Push an AudioFrame (or any frame), or an array with its ``rate`` (see ``as_samples``)."""
        return _sync(self.apush(frame, rate))

    async def apush(self, frame, rate: int | None = None) -> list:
        if isinstance(frame, np.ndarray) or rate is not None:
            if rate is None:
                raise UsageError("push(array) needs the sample rate: push(array, rate)")
            _check_count("rate", rate, "samples per second", "push")
            data = as_samples(frame)
            start = self._next.get(rate, 0)
            frame = AudioFrame(data, rate, start)
            self._next = {rate: start + len(data)}
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
    """Run ``samples`` ((n, channels) or (n,); float64, float32, int32 or int16, see ``as_samples``)
    through a chain in one call, as one frame or in frames of ``frame_size`` samples.

    Returns the processed samples (2-D) and their sample rate; for float64 or int32 input in that
    type, else as the chain made them (int16 or float32). Raises
    UsageError (a ValueError) for an array that cannot be (samples, channels), e.g. a (2, 48000)
    channels-first one, and for a ``rate`` or ``frame_size`` that is not a whole number above 0.
    """
    _check_count("rate", rate, "samples per second")
    if frame_size is not None:
        _check_count("frame_size", frame_size, "samples")
    dtype = np.asarray(samples).dtype
    data = as_samples(samples)
    chain = open_chain(*specs, registry=registry)
    step = frame_size or max(len(data), 1)
    frames = []
    for start in range(0, len(data), step) or [0]:  # an empty input is one empty frame
        frames += chain.push(AudioFrame(data[start : start + step], rate, start))
    frames += chain.flush()
    if not frames:
        out_format = chain._chains["audio"].out_format
        empty = dtype if dtype not in (np.int16, np.float32) else data.dtype
        return np.zeros((0, out_format.channels), empty), out_format.rate
    out = np.concatenate([f.data for f in frames])
    if dtype not in (np.int16, np.float32):  # the caller's type back; int16 and float32 stay as made
        out = _as_dtype(out, dtype)
    return out, frames[0].sample_rate


def _check_count(name: str, value, unit: str, where: str = "process") -> None:
    """A whole number above 0 (a numpy integer too; not a bool, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise UsageError(f"{where}: {name} must be a whole number of {unit} above 0, not {value!r}")


def _sync(coroutine):
    """Run a coroutine that never suspends (a chain of plain processors) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("this chain has async processors: use apush()/aflush() inside an event loop")
