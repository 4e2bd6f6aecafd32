"""Any lkplug processor chain as a LiveKit ``rtc.FrameProcessor``, for agents and apps::

    from lkplug_livekit.frame_processor import ChainFrameProcessor

    stream = rtc.AudioStream(track, noise_cancellation=ChainFrameProcessor("apm", "noisegate:-45"))

The SDK calls ``_process`` with each received frame and wants one frame back, of the same rate and
channels. The chain is planned against the first frame, with converters back to the stream's own
format (s16, its rate and channels) at the end. A chain that holds samples (a resampler, the 10 ms
rechunking of ``apm``) delays the audio: until its first output arrives, frames come back silent, and
the audio is then that much late, steadily; every frame keeps its length.
"""

from __future__ import annotations

import numpy as np
from livekit import rtc

from lkplug import AudioContract, AudioFormat, AudioFrame, Registry, build
from lkplug.api import _sync
from lkplug.chain import Built, Chain


class _StreamFormat:
    """The stream's own format, as the end of the chain (like a sink's contract)."""

    def __init__(self, rate: int, channels: int):
        self.accepts = {"audio": AudioContract(rates=(rate,), channels=(channels,), sample_formats=("s16",))}


class ChainFrameProcessor(rtc.FrameProcessor[rtc.AudioFrame]):
    def __init__(self, *specs: str, registry: Registry | None = None):
        self.specs = specs
        self.registry = registry or Registry.load()
        self.stages = [build(self.registry, "processor", spec) for spec in specs]  # bad specs fail here
        self._enabled = True
        self._chain: Chain | None = None
        self._held: list[np.ndarray] = []
        self._held_samples = 0
        self._timestamp = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def _plan(self, fmt: AudioFormat) -> Chain:
        end = Built("livekit stream", _StreamFormat(fmt.rate, fmt.channels))
        return Chain.plan("audio", fmt, self.stages, self.registry, sink=end)

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        channels, size = frame.num_channels, frame.samples_per_channel
        data = np.frombuffer(frame.data, np.int16).reshape(size, channels)
        fmt = AudioFormat(frame.sample_rate, channels, "s16")
        if self._chain is None or self._chain.in_format != fmt:
            self._chain = self._plan(fmt)  # the first frame, or the stream changed format
        for out in _sync(self._chain.push(AudioFrame(data, frame.sample_rate, self._timestamp))):
            self._held.append(out.data)
            self._held_samples += out.samples
        self._timestamp += size
        if self._held_samples < size:
            result = np.zeros((size, channels), np.int16)  # the chain has not caught up yet
        else:
            held = np.concatenate(self._held)
            result, rest = held[:size], held[size:]
            self._held, self._held_samples = [rest], len(rest)
        return rtc.AudioFrame(result.tobytes(), frame.sample_rate, channels, size)

    def _close(self) -> None:
        self._chain, self._held, self._held_samples = None, [], 0
