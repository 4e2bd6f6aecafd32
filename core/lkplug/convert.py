"""Conversions the engine inserts between stages whose audio contracts differ.

Sample format and frame size are plain numpy and live here; sample-rate conversion and channel
layout conversion need real libraries (soxr, libswresample) and come from whichever plugin declares
``converts=("rate",)`` or ``converts=("layout",)``. What layout to convert to is decided here.
"""

from __future__ import annotations

import numpy as np

from .components import Processor
from .frames import LAYOUTS, AudioFormat, AudioFrame, default_layout, layout_channels

S16_SCALE = 32768.0


def to_float(data: np.ndarray) -> np.ndarray:
    if data.dtype == np.float32:
        return data
    return data.astype(np.float32) * np.float32(1.0 / S16_SCALE)


def to_s16(data: np.ndarray) -> np.ndarray:
    """Float full scale 1.0 to int16, rounded and clipped (never wrapped)."""
    if data.dtype == np.int16:
        return data
    return round_to_s16(data, S16_SCALE)


def round_to_s16(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``values * scale`` (computed in float32, in int16 units) rounded and clipped to int16."""
    if scale == 1.0 and values.dtype == np.float32:
        scaled = values  # a temporary of the caller's: rounded in place
    else:
        scaled = np.multiply(values, np.float32(scale), dtype=np.float32)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, -32768, 32767, out=scaled).astype(np.int16)


def count_s16_clips(data: np.ndarray, scale: float = 1.0) -> int:
    """How many of ``data * scale`` (int16 units) ``round_to_s16`` clips: for a stage's ``clipped``
    count, which the engine reports once at the end of a run (like SoX's "clipped N samples")."""
    if data.dtype == np.int16 and abs(scale) <= 1.0:
        return 0
    high, low = 32767.5 / abs(scale), -32768.5 / abs(scale)
    if not data.size or (data.max() <= high and data.min() >= low):
        return 0  # the usual case, in two passes that make no arrays (NaN takes the long way)
    return int(np.count_nonzero((data > high) | (data < low)))


def clip_float(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Float samples clipped to full scale (-1.0 .. 1.0) for an integer encoding, and how many were
    beyond it (for a sink's ``clipped``)."""
    clipped = int(np.count_nonzero((data > 1.0) | (data < -1.0)))
    return (np.clip(data, -1.0, 1.0) if clipped else data), clipped


def convert_sample_format(data: np.ndarray, sample_format: str) -> np.ndarray:
    return to_s16(data) if sample_format == "s16" else to_float(data)


class SampleFormatConverter(Processor):
    def __init__(self, sample_format: str):
        self.sample_format = sample_format
        self.label = f"format:{sample_format}"
        self.clipped = 0  # float samples beyond full scale, clipped going to s16

    def output_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(fmt.rate, fmt.channels, self.sample_format, fmt.frame_size, fmt.layout)

    def process(self, frame: AudioFrame) -> list:
        if self.sample_format == "s16" and frame.data.dtype == np.float32:
            self.clipped += count_s16_clips(frame.data, S16_SCALE)
        return [frame.replace(data=convert_sample_format(frame.data, self.sample_format))]


class Rechunker(Processor):
    """Regroups samples into frames of exactly ``frame_size`` samples. On flush the tail is padded
    with silence (stages that need fixed frames, WebRTC's APM, accept nothing else); ``padding`` then
    says how many samples were added, so the engine can cut them again after the stage."""

    def __init__(self, frame_size: int):
        self.frame_size = frame_size
        self.label = f"rechunk:{frame_size}"
        self._pending: list[np.ndarray] = []
        self._held = 0
        self._next_timestamp: int | None = None
        self.rate = 0
        self.padding = 0
        self._layout = ""

    def output_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(fmt.rate, fmt.channels, fmt.sample_format, self.frame_size, fmt.layout)

    def process(self, frame: AudioFrame) -> list:
        if not self._held and frame.samples == self.frame_size:  # already exact: pass it on
            self._next_timestamp, self.rate = frame.timestamp + frame.samples, frame.sample_rate
            return [frame]
        if self._next_timestamp is None or not self._held:
            self._next_timestamp = frame.timestamp
        elif frame.timestamp > self._next_timestamp + self._held:
            # a hole (lost packets, DTX, damage): silence in it keeps what follows at its time, as
            # the frames after a fixed-frame stage carry no gaps
            hole = frame.timestamp - self._next_timestamp - self._held
            self._pending.append(np.zeros((hole, frame.data.shape[1]), frame.data.dtype))
            self._held += hole
        self.rate = frame.sample_rate
        self._layout = frame.layout
        self._pending.append(frame.data)
        self._held += frame.samples
        if self._held < self.frame_size:
            return []
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        whole = self._held // self.frame_size * self.frame_size
        out = [
            self._frame(data[start : start + self.frame_size]) for start in range(0, whole, self.frame_size)
        ]
        rest = data[whole:]
        self._pending, self._held = ([rest], len(rest)) if len(rest) else ([], 0)
        return out

    def flush(self) -> list:
        if not self._held:
            return []
        data = np.concatenate(self._pending)
        padded = np.zeros((self.frame_size, data.shape[1]), dtype=data.dtype)
        padded[: len(data)] = data
        self.padding = self.frame_size - len(data)
        self._pending, self._held = [], 0
        return [self._frame(padded)]

    def _frame(self, data: np.ndarray) -> AudioFrame:
        frame = AudioFrame(data, self.rate, self._next_timestamp, self._layout)
        self._next_timestamp += len(data)
        return frame


def pick(allowed: tuple | None, current: int) -> int:
    """The allowed value to convert ``current`` to: itself if allowed, else the nearest above (or,
    failing that, the largest), so conversions lose as little as they can."""
    if allowed is None or current in allowed:
        return current
    above = sorted(v for v in allowed if v > current)
    return above[0] if above else max(allowed)


def speakers(layout: str) -> set[str]:
    """The speaker names of an FFmpeg layout (``5.1``: FL FR FC LFE BL BR); a layout with no order
    ("3 channels") counts as FFmpeg's default layout for its count."""
    if layout in LAYOUTS:
        return set(LAYOUTS[layout])
    if "+" in layout:
        return set(layout.split("+"))
    count = layout_channels(layout)
    return set(LAYOUTS.get(default_layout(count), ())) if count else set()


def pick_layout(layout: str, channels: int, counts: tuple | None, layouts: tuple | None) -> str:
    """The layout to convert ``layout`` (of ``channels`` channels) to for a stage that takes
    ``counts`` channels and ``layouts`` (None: any): itself if taken; else, among the layouts taken,
    the one FFmpeg's format negotiation picks (libavfilter's ``swap_channel_layouts``, see
    ``negotiation_score``); with no list of layouts, the default layout of the nearest count taken."""
    if (counts is None or channels in counts) and (layouts is None or layout in layouts):
        return layout
    if layouts is None:
        return default_layout(pick(counts, channels))
    options = [name for name in layouts if counts is None or layout_channels(name) in counts]
    if not options:
        return default_layout(pick(counts, channels))
    have = speakers(layout)
    # the highest score; among equals, the fewest channels more than the input (FFmpeg's order)
    return max(options, key=lambda name: (negotiation_score(have, speakers(name)), -len(speakers(name))))


# libavfilter's substitutions when it compares layouts, in its order: a pair (or the centre) that the
# input has and the output lacks may stand for one the output has and the input lacks
_FRONT, _CENTER, _WIDE = {"FL", "FR"}, {"FLC", "FRC"}, {"WL", "WR"}
_SIDE, _DIRECT, _BACK = {"SL", "SR"}, {"SDL", "SDR"}, {"BL", "BR"}
SUBSTITUTES = (
    (_FRONT, _CENTER), (_FRONT, _WIDE), (_FRONT, {"FC"}), (_CENTER, _FRONT), (_CENTER, _WIDE),
    (_CENTER, {"FC"}), (_WIDE, _FRONT), (_WIDE, _CENTER), (_WIDE, {"FC"}), ({"FC"}, _FRONT),
    ({"FC"}, _CENTER), ({"FC"}, _WIDE), (_SIDE, _DIRECT), (_SIDE, _BACK), (_SIDE, {"BC"}),
    (_BACK, _DIRECT), (_BACK, _SIDE), (_BACK, {"BC"}), ({"BC"}, _BACK), ({"BC"}, _DIRECT),
    ({"BC"}, _SIDE),
)  # fmt: skip


def negotiation_score(have: set[str], other: set[str]) -> int:
    """How well a stage's layout ``other`` (speaker names) suits input speakers ``have``, scored as
    FFmpeg's filter graph scores it: 10 per speaker in common (a substitute counts, less 2), LFE
    in both counts, 5 off per speaker the input lacks; speakers the input loses cost nothing."""
    have, other, score = set(have), set(other), 0
    for lost, instead in SUBSTITUTES:
        if have & lost and not other & lost and other & instead and not have & instead:
            have -= lost
            other -= instead
            score += 10 * len(instead) - 2
    if "LFE" in have and "LFE" in other:
        score += 10
    have.discard("LFE")
    other.discard("LFE")
    return score + 10 * len(have & other) - 5 * len(other - have)
