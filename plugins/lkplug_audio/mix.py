"""``mix``: many streams into one (a room, several files), run by the engine's fan-in.

Every stream reaches the mix already converted to one format (``rate=``, mono, ``flt``) by the
engine's usual converters (soxr for the rate, libswresample for the layout) and placed on one
timeline; the mix only says which output channel each stream goes to and adds them up.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from lkplug import AudioContract, AudioFormat, Processor, UsageError
from lkplug.frames import default_layout

from . import MIX_LAYOUTS as LAYOUTS  # declared with the component: listing needs no numpy


class Mix(Processor):
    """``sum``: every stream into one mono channel, lowered by ``headroom`` dB. ``channels``: one
    channel per stream, in join order or ``order=``, at the level sent. ``split``: the streams whose
    name matches ``left=`` in the left channel, the rest in the right, each side a sum lowered by
    ``headroom`` dB (LiveKit Egress's dual-channel recording)."""

    #: the engine runs this stage as a fan-in: many streams in, one out
    fans_in = True
    emits = "audio flt at rate=: mono (sum), one channel per stream (channels) or stereo (split)"
    #: what each stream is converted to before the mix (`lkplug inspect mix`; rate= changes the rate)
    accepts = {"audio": AudioContract(rates=(48000,), channels=(1,), sample_formats=("flt",))}

    def __init__(
        self,
        layout: str = "sum",
        order: str = "",
        left: str = "",
        count: int = 0,
        rate: int = 48000,
        headroom: float = 6.0206,  # 20 log10(2), a half: -6.00 dB is 0.5012, two at full scale clip
    ):
        if layout not in LAYOUTS:
            raise UsageError(f"mix: layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
        if layout == "split" and not left:
            raise UsageError("mix:split needs left=NAME (a glob, e.g. left=agent-*): who goes left")
        if left and layout != "split" or order and layout != "channels":
            raise UsageError("mix: left= goes with mix:split, order= with mix:channels")
        self.layout, self.rate, self.left = layout, rate, left
        self.order = [name.strip() for name in order.split(",") if name.strip()]
        self.named = [name for name in self.order if name != "*"]
        self.rest = not self.order or "*" in self.order  # streams not named get the free channels
        self.count = count
        if layout == "channels" and not count and self.order and not self.rest:
            self.count = len(self.named)
        self.gain = np.float32(10 ** (-headroom / 20)) if layout != "channels" else np.float32(1.0)
        self.headroom = headroom
        # each stream is converted to this before it is placed on the timeline
        self.accepts = {"audio": AudioContract(rates=(rate,), channels=(1,), sample_formats=("flt",))}
        self._taken: dict[int, str] = {}

    def inputs_known(self, count: int) -> None:
        """The engine knows how many streams there will be (files): ``channels`` gets one each."""
        if self.layout == "channels" and not self.count:
            self.count = count

    @property
    def channels(self) -> int:
        if self.layout == "channels":
            if not self.count:
                raise UsageError(
                    "mix:channels over a room needs count=N (the channels of the output) or "
                    "order=NAME,... without '*'; e.g. mix:channels,count=2"
                )
            return self.count
        return 1 if self.layout == "sum" else 2

    def output_format(self, fmt=None) -> AudioFormat:
        channels = self.channels
        layout = default_layout(channels) if channels <= 2 else f"{channels} channels"
        return AudioFormat(self.rate, channels, "flt", None, layout)

    def assign(self, name: str) -> int | None:
        """The output channel for the stream ``name`` (called as it joins), or None: no place left."""
        if self.layout == "sum":
            return 0
        if self.layout == "split":
            return 0 if fnmatch.fnmatchcase(name, self.left) else 1
        for index, pattern in enumerate(self.named):
            if fnmatch.fnmatchcase(name, pattern) and index not in self._taken:
                self._taken[index] = name
                return index
        if self.rest:
            reserved = set(range(len(self.named)))
            for index in range(self.channels):
                if index not in reserved and index not in self._taken:
                    self._taken[index] = name
                    return index
        return None

    def waiting_for(self) -> list[str]:
        """The names in ``order=`` that no stream has taken yet (for a hint while nothing records)."""
        return [name for index, name in enumerate(self.named) if index not in self._taken]

    def mix(self, blocks: list[tuple[int, np.ndarray]], samples: int) -> np.ndarray:
        """``blocks`` of (channel, mono float32 samples) -> (samples, channels) float32."""
        out = np.zeros((samples, self.channels), np.float32)
        for channel, data in blocks:
            out[:, channel] += data
        if self.gain != 1.0:
            out *= self.gain
        return out

    def process(self, frame) -> list:
        raise UsageError("mix combines streams: give it as the first --proc, after the --source options")
