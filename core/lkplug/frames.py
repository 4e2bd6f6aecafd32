"""Frames: numpy arrays with the few facts a media stage needs.

Audio is (samples, channels), interleaved like LiveKit's and soundfile's frames, in one of two sample
formats named as FFmpeg names them: ``s16`` (int16) and ``flt`` (float32, full scale is 1.0). Its
channels are in FFmpeg's order for the frame's channel layout, named as FFmpeg names layouts
(``stereo``, ``3.0``, ``5.1(side)``, ``FL+FR+LFE``); no layout means FFmpeg's default for the count.
Every frame knows its media ``kind`` and its start ``time`` in seconds, so a muxer can interleave kinds.

Video is a numpy array in FFmpeg's layout for its pixel format (what PyAV's ``to_ndarray`` gives):
``yuv420p`` and ``nv12`` are (height * 3 / 2, width) uint8 planes stacked, ``rgb24`` (height, width, 3),
``rgba``/``bgra`` (height, width, 4), ``gray`` (height, width). A picture's pixels need not be square:
its sample aspect ratio (FFmpeg's SAR, the shape of one pixel) says how wide it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

SAMPLE_FORMATS = {"s16": np.dtype(np.int16), "flt": np.dtype(np.float32)}
DTYPE_TO_FORMAT = {dtype: name for name, dtype in SAMPLE_FORMATS.items()}
#: FFmpeg's integer sample formats, packed and planar (the rest, flt and dbl, are floating point)
INTEGER_SAMPLE_FORMATS = frozenset(("u8", "u8p", "s16", "s16p", "s32", "s32p", "s64", "s64p"))
PIXEL_FORMATS = ("yuv420p", "nv12", "rgb24", "rgba", "bgra", "gray")


def is_integer_format(sample_format: str | None) -> bool:
    """True for an integer sample format by FFmpeg's name (``s16``, ``s32p``); False for float or None."""
    return sample_format in INTEGER_SAMPLE_FORMATS


# FFmpeg's standard channel layouts (``ffmpeg -layouts``): name -> channels, in FFmpeg's order
LAYOUTS = {
    name: tuple(channels.split("+"))
    for name, channels in (
        ("mono", "FC"),
        ("stereo", "FL+FR"),
        ("2.1", "FL+FR+LFE"),
        ("3.0", "FL+FR+FC"),
        ("3.0(back)", "FL+FR+BC"),
        ("4.0", "FL+FR+FC+BC"),
        ("quad", "FL+FR+BL+BR"),
        ("quad(side)", "FL+FR+SL+SR"),
        ("3.1", "FL+FR+FC+LFE"),
        ("5.0", "FL+FR+FC+BL+BR"),
        ("5.0(side)", "FL+FR+FC+SL+SR"),
        ("4.1", "FL+FR+FC+LFE+BC"),
        ("5.1", "FL+FR+FC+LFE+BL+BR"),
        ("5.1(side)", "FL+FR+FC+LFE+SL+SR"),
        ("6.0", "FL+FR+FC+BC+SL+SR"),
        ("6.0(front)", "FL+FR+FLC+FRC+SL+SR"),
        ("hexagonal", "FL+FR+FC+BL+BR+BC"),
        ("6.1", "FL+FR+FC+LFE+BC+SL+SR"),
        ("6.1(back)", "FL+FR+FC+LFE+BL+BR+BC"),
        ("6.1(front)", "FL+FR+LFE+FLC+FRC+SL+SR"),
        ("7.0", "FL+FR+FC+BL+BR+SL+SR"),
        ("7.0(front)", "FL+FR+FC+FLC+FRC+SL+SR"),
        ("7.1", "FL+FR+FC+LFE+BL+BR+SL+SR"),
        ("7.1(wide)", "FL+FR+FC+LFE+BL+BR+FLC+FRC"),
        ("7.1(wide-side)", "FL+FR+FC+LFE+FLC+FRC+SL+SR"),
        ("octagonal", "FL+FR+FC+BL+BR+BC+SL+SR"),
        ("downmix", "DL+DR"),
    )
}
# FFmpeg's default layout for a channel count (av_channel_layout_default)
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def default_layout(channels: int) -> str:
    """FFmpeg's name for the default layout of ``channels`` channels ("N channels": no order)."""
    return DEFAULT_LAYOUTS.get(channels, f"{channels} channels")


def layout_channels(layout: str) -> int | None:
    """How many channels the FFmpeg layout name ``layout`` has (``5.1(side)``: 6, ``FL+FR+LFE``: 3,
    ``6c`` or ``6 channels``: 6); None for a name not known here (FFmpeg may still know it)."""
    if layout in LAYOUTS:
        return len(LAYOUTS[layout])
    count = layout.removesuffix(" channels").removesuffix("c")
    if count.isdigit():
        return int(count)
    if "+" in layout:
        return layout.count("+") + 1
    return None


class Frame:
    """Base of every frame type. ``kind`` names the media ("audio", "video")."""

    kind: ClassVar[str]
    __slots__ = ()

    @property
    def time(self) -> float:
        """Start time in seconds since the stream started."""
        raise NotImplementedError

    def replace(self, **changes):
        return replace(self, **changes)

    def until(self, end: float):
        """The part of this frame before ``end`` seconds, or None (for ``--duration``)."""
        return self if self.time < end else None


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What an audio stream carries; ``frame_size`` is None when frames vary in length. ``layout`` is
    FFmpeg's channel layout name; empty, or one whose count differs from ``channels`` (a stage that
    changed the count), becomes FFmpeg's default layout for ``channels``.

    ``ffmpeg_format`` is the sample format the ffmpeg CLI would hold this audio in here, when it is
    not ``sample_format`` (empty: the same): the decoder's (``s32`` for 24-bit, ``dbl``, ``u8``)
    where lkplug carries it as s16 or flt, until a stage works in another (``gain``: flt, as FFmpeg's
    volume filter). It decides the format an encoder is given, and so whether a downmix into it is
    scaled, as in ffmpeg; it is not part of a format's equality."""

    rate: int
    channels: int
    sample_format: str = "s16"
    frame_size: int | None = None
    layout: str = ""
    ffmpeg_format: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.layout or layout_channels(self.layout) not in (None, self.channels):
            object.__setattr__(self, "layout", default_layout(self.channels))

    def __str__(self) -> str:
        size = f", {self.frame_size / self.rate * 1000:g} ms frames" if self.frame_size else ""
        layout = f" ({self.layout})" if self.layout != default_layout(self.channels) else ""
        return f"audio {self.rate} Hz, {self.channels} ch{layout}, {self.sample_format}{size}"


@dataclass(frozen=True, slots=True, eq=False)
class AudioFrame(Frame):
    """``data`` has shape (samples, channels), dtype int16 or float32.

    ``timestamp`` counts samples (per channel) since the stream started; a frame that starts later
    than the previous one ended leaves a hole (lost packets, DTX) that a sink may fill with silence.
    ``layout`` names the channel layout as FFmpeg does (empty: the default for the count).
    """

    data: np.ndarray
    sample_rate: int
    timestamp: int = 0
    layout: str = ""
    kind: ClassVar[str] = "audio"

    def __post_init__(self):
        data = self.data
        if data.ndim != 2:
            raise ValueError(f"audio frame data must be (samples, channels), got shape {data.shape}")
        if data.dtype not in DTYPE_TO_FORMAT:
            raise ValueError(f"audio frame dtype must be int16 or float32, got {data.dtype}")

    @property
    def samples(self) -> int:
        return self.data.shape[0]

    @property
    def channels(self) -> int:
        return self.data.shape[1]

    @property
    def sample_format(self) -> str:
        return DTYPE_TO_FORMAT[self.data.dtype]

    @property
    def duration(self) -> float:
        return self.data.shape[0] / self.sample_rate

    @property
    def time(self) -> float:
        return self.timestamp / self.sample_rate

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.data.shape[1], self.sample_format, layout=self.layout)

    def until(self, end: float):
        keep = round(end * self.sample_rate) - self.timestamp
        if keep <= 0:
            return None
        return self if keep >= len(self.data) else self.replace(data=self.data[:keep])


def video_shape(pixel_format: str, width: int, height: int) -> tuple[int, ...]:
    """The array shape of one picture in ``pixel_format``."""
    if pixel_format in ("yuv420p", "nv12"):
        return (height * 3 // 2, width)
    if pixel_format == "rgb24":
        return (height, width, 3)
    if pixel_format in ("rgba", "bgra"):
        return (height, width, 4)
    return (height, width)


def even_size(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` pixels to the nearest even number, halves up (at least 2), as
    FFmpeg's scale=-2 rounds a side (av_rescale(.., .., 2 * denominator) * 2)."""
    return max(2, (numerator + denominator) // (denominator * 2) * 2)


def square_width(width: int, sar: tuple[int, int] | None) -> int:
    """The width at which ``width`` pixels of sample aspect ratio ``sar`` show with square pixels,
    as ``even_size`` rounds it (720 at 32:27: 853.3, so 854); ``width`` itself for an unstated SAR
    or one within 0.4% of square (FFmpeg's tolerance between two SARs that disagree)."""
    if sar is None or abs(sar[0] - sar[1]) * 250 <= sar[1]:
        return width
    return even_size(width * sar[0], sar[1])


def square_pixels_advice(frame: VideoFrame) -> str:
    """For a sink that cannot store a picture's SAR, whose pixels players will then show square:
    how the picture will look and the ``scale:`` that keeps its shape ("the 720x480 pictures of SAR
    32:27 will show as 720x480, not 854x480; put scale:width=854,height=480 before this sink for
    square pixels"); empty when squaring would not change its width."""
    width, height = frame.width, frame.height
    shown = square_width(width, frame.sar)
    if shown == width:
        return ""
    num, den = frame.sar
    return (
        f"the {width}x{height} pictures of SAR {num}:{den} will show as {width}x{height}, not"
        f" {shown}x{height}; put scale:width={shown},height={height} before this sink for square pixels"
    )


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """What a video stream carries. ``fps`` is the nominal rate (None: unknown or variable); it
    informs encoders but is not part of the contract, since timestamps carry the timing. ``sar`` is
    the pictures' sample aspect ratio (see ``VideoFrame``), not part of the contract either."""

    width: int
    height: int
    pixel_format: str = "yuv420p"
    fps: float | None = field(default=None, compare=False)
    sar: tuple[int, int] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        fps = f", {self.fps:g} fps" if self.fps else ""
        sar = f", SAR {self.sar[0]}:{self.sar[1]}" if self.sar and self.sar[0] != self.sar[1] else ""
        return f"video {self.width}x{self.height} {self.pixel_format}{sar}{fps}"


@dataclass(frozen=True, slots=True, eq=False)
class VideoFrame(Frame):
    """One picture: ``data`` is uint8 in FFmpeg's layout for ``pixel_format`` (see the module doc);
    ``time`` is its presentation time in seconds, ``duration`` how long it shows (0: unknown).
    ``color`` is the colour description as (matrix, primaries, transfer) code points of ITU-T H.273,
    as H.264 and FFmpeg number them (1: BT.709, 6: SMPTE 170M, 9: BT.2020), None when not stated;
    YUV is always limited range. ``sar`` is the sample aspect ratio, the width of one pixel to its
    height as a reduced (num, den) pair, as FFmpeg's SAR: (32, 27) for 720x480 shown at 16:9, (1, 1)
    for square pixels stated; None when not stated (FFmpeg's 0:1), which players show square."""

    data: np.ndarray
    pixel_format: str
    width: int
    height: int
    time: float = 0.0
    duration: float = 0.0
    color: tuple[int, int, int] | None = None
    sar: tuple[int, int] | None = None
    kind: ClassVar[str] = "video"

    def __post_init__(self):
        if self.pixel_format not in PIXEL_FORMATS:
            known = ", ".join(PIXEL_FORMATS)
            raise ValueError(f"pixel format must be one of {known}, got {self.pixel_format}")
        expected = video_shape(self.pixel_format, self.width, self.height)
        if self.data.shape != expected or self.data.dtype != np.uint8:
            raise ValueError(
                f"{self.pixel_format} {self.width}x{self.height} needs uint8 data of shape {expected},"
                f" got {self.data.dtype} {self.data.shape}"
            )

    @property
    def format(self) -> VideoFormat:
        return VideoFormat(self.width, self.height, self.pixel_format, sar=self.sar)
