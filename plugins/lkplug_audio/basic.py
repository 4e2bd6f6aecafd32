"""Processors and sinks that need nothing but numpy."""

from __future__ import annotations

import numpy as np

from lkplug import AudioContract, Processor, Sink, UsageError, VideoContract
from lkplug.convert import ChannelConverter, round_to_s16


class Gain(Processor):
    emits = "the format it takes (s16 is clipped, never wrapped)"

    def __init__(self, db: float = 0.0, factor: float | None = None):
        if factor is not None and db != 0.0:
            raise UsageError("gain: give db= or factor=, not both")
        self.factor = np.float32(factor if factor is not None else 10.0 ** (db / 20.0))
        # an attenuation commutes with a downmix (the planner then runs it on fewer channels); a
        # boost does not on s16, where each channel would clip before the mix rather than after
        self.per_channel_linear = bool(self.factor <= 1.0)

    def process(self, frame) -> list:
        data = frame.data
        if data.dtype == np.int16:
            return [frame.replace(data=round_to_s16(data, self.factor))]
        return [frame.replace(data=data * self.factor)]


class Remix(Processor):
    emits = "audio with channels= channels, same rate and sample format"
    channel_mix = True

    def __init__(self, channels: int):
        self.channels = channels
        self._converter: ChannelConverter | None = None

    def output_format(self, fmt):
        return type(fmt)(fmt.rate, self.channels, fmt.sample_format, fmt.frame_size)

    def process(self, frame) -> list:
        if frame.channels == self.channels:
            return [frame]
        if self._converter is None or self._converter.matrix.shape[0] != frame.channels:
            self._converter = ChannelConverter(frame.channels, self.channels)
        return self._converter.process(frame)


class NullSink(Sink):
    accepts = {"audio": AudioContract(), "video": VideoContract()}

    def __init__(self):
        self.frames = 0

    def write(self, frame) -> None:
        self.frames += 1
