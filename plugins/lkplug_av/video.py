"""Video processors: ``scale`` and ``format`` through FFmpeg's swscale (PyAV's reformatter), and
``fps``, which drops or repeats pictures onto a fixed grid the way FFmpeg's fps filter does."""

from __future__ import annotations

import math
from fractions import Fraction

from lkplug import Processor, UsageError, VideoContract, VideoFormat, VideoFrame
from lkplug.frames import even_size


def to_av(frame: VideoFrame):
    """A PyAV frame over the same memory (no copy) where PyAV allows it."""
    import av

    data = frame.data
    picture = None
    # (PyAV's from_numpy_buffer reads a yuv420p picture 2 rows high, 3 rows of buffer, as one plane)
    if data.flags.c_contiguous and frame.pixel_format != "nv12" and frame.height > 2:
        picture = av.VideoFrame.from_numpy_buffer(data, format=frame.pixel_format)
        # ...and PyAV 18's gets the size wrong for a yuv420p picture whose height is not a multiple
        # of 4 (480x270 became 480x268, its chroma planes read from the wrong place: every such
        # picture went out with its colours shifted up). Those are copied
        if (picture.width, picture.height) != (frame.width, frame.height):
            picture = None
    if picture is None:
        picture = av.VideoFrame.from_ndarray(data, format=frame.pixel_format)
    if frame.color is not None:  # swscale converts YUV <-> RGB with the picture's own matrix
        picture.colorspace, picture.color_primaries, picture.color_trc = frame.color
    return picture


class _Reformatter:
    """One swscale context kept across frames (PyAV's ``frame.reformat`` makes a new one each time)."""

    def __init__(self):
        self._reformatter = None

    def __call__(self, frame: VideoFrame, width: int, height: int, pixel_format: str) -> VideoFrame:
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        out = self._reformatter.reformat(to_av(frame), width=width, height=height, format=pixel_format)
        sar = scaled_sar(frame.sar, frame.width, frame.height, width, height)
        return VideoFrame(
            out.to_ndarray(), pixel_format, width, height, frame.time, frame.duration, frame.color, sar
        )


def scaled_sar(sar: tuple[int, int] | None, width: int, height: int, out_width: int, out_height: int):
    """The sample aspect ratio of a ``width`` x ``height`` picture of ``sar`` scaled to ``out_width``
    x ``out_height``, so that it shows at the same display aspect, as FFmpeg's scale filter sets it
    (sar * out_height*width / (out_width*height), reduced): 720x480 at 32:27 scaled to 640x360 is
    1:1, to 640x426 is 71:60. An unstated SAR (None) stays unstated, as in FFmpeg."""
    if sar is None:
        return None
    out = Fraction(*sar) * Fraction(out_height * width, out_width * height)
    return out.numerator, out.denominator


# FFmpeg's av_image_check_size: (w+128)*(h+128) must stay below INT_MAX/8
MAX_PICTURE = (2**31 - 1) // 8


class Scale(Processor):
    accepts = {"video": VideoContract()}
    emits = "video of width= x height=, same pixel format (a derived side even, as scale=-2:h)"

    def __init__(self, width: int = 0, height: int = 0):
        if not width and not height:
            raise UsageError("scale: give width=, height= or both (e.g. scale:height=360)")
        self.width = width
        self.height = height
        self.reformat = _Reformatter()

    def size(self, width: int, height: int, pixel_format: str) -> tuple[int, int]:
        """FFmpeg's rules: a side left out follows the aspect ratio rounded to an even number, as
        ``scale=-2:360`` does (641x359 -> 642x360; halves up: 1280x720 to width 80 is 80x46), so any
        encoder can take the result; a side given is kept. Raises UsageError for an odd side given
        where the pixel format subsamples chroma (yuv420p, nv12), which FFmpeg's encoders refuse."""
        if pixel_format in ("yuv420p", "nv12"):  # chroma is subsampled 2x2: sizes must be even
            for name, value in (("width", self.width), ("height", self.height)):
                if value % 2:
                    raise UsageError(
                        f"scale:{name}={value}: {pixel_format} needs an even {name} (ffmpeg's scale keeps"
                        f" {value} and libx264 refuses it: {name} not divisible by 2); use"
                        f" {' or '.join(str(even) for even in (value - 1, value + 1) if even)}"
                    )
        out_w = self.width or _derived(self.height, width, height)
        out_h = self.height or _derived(self.width, height, width)
        return out_w, out_h

    def output_format(self, fmt):
        if fmt is None:
            return None
        width, height = self.size(fmt.width, fmt.height, fmt.pixel_format)
        if (width + 128) * (height + 128) >= MAX_PICTURE:  # checked before anything is written
            given = ",".join(
                f"{name}={value}" for name, value in (("width", self.width), ("height", self.height)) if value
            )
            raise UsageError(
                f"scale:{given} makes {width}x{height} of {fmt.width}x{fmt.height}, beyond FFmpeg's largest"
                f" picture ((width+128)*(height+128) < {MAX_PICTURE}, e.g. 16000x16000)"
            )
        sar = scaled_sar(fmt.sar, fmt.width, fmt.height, width, height)
        return VideoFormat(width, height, fmt.pixel_format, fmt.fps, sar)

    def process(self, frame: VideoFrame) -> list:
        width, height = self.size(frame.width, frame.height, frame.pixel_format)
        if (width, height) == (frame.width, frame.height):
            return [frame]
        return [self.reformat(frame, width, height, frame.pixel_format)]


def _derived(given: int, side: int, other: int) -> int:
    """The side left out, ``given * side / other`` to the nearest even number, halves up: FFmpeg's
    scale=-2 (av_rescale(given, side, other * 2) * 2, which rounds halves away from zero)."""
    return even_size(given * side, other)


class PixelFormat(Processor):
    accepts = {"video": VideoContract()}
    emits = "video in pixel_format=, same size"

    def __init__(self, pixel_format: str):
        self.pixel_format = pixel_format
        self.reformat = _Reformatter()

    def output_format(self, fmt):
        if fmt is None:
            return None
        return VideoFormat(fmt.width, fmt.height, self.pixel_format, fmt.fps, fmt.sar)

    def process(self, frame: VideoFrame) -> list:
        if frame.pixel_format == self.pixel_format:
            return [frame]
        if self.pixel_format in ("yuv420p", "nv12") and (frame.width % 2 or frame.height % 2):
            raise UsageError(
                f"format: {self.pixel_format} needs even sizes, the video is {frame.width}x{frame.height}"
                " (put scale: before it)"
            )
        return [self.reformat(frame, frame.width, frame.height, self.pixel_format)]


class Fps(Processor):
    """FFmpeg's ``fps`` filter with its defaults (``round=near``, ``eof_action=round``): each picture
    takes the slot nearest its time on a 1/rate grid (halves away from zero), the first picture's
    slot is the first output; empty slots repeat the picture before them, and a slot claimed twice
    keeps the later picture. The stream ends at the slot nearest the last picture's end (its time
    plus its duration): the last picture fills the slots before that one, and none if it starts
    there (a last picture at 2.8 s, 1/30 s long, into 10 fps: the end is slot 28, its own, so it is
    dropped, as FFmpeg drops it). A last picture of unknown duration (0: a live track's) lasts as
    long as the one before it, as ffmpeg estimates one from the stream's frame rate."""

    accepts = {"video": VideoContract()}
    emits = "video at rate= frames per second"

    def __init__(self, rate: str | float):
        self.rate = parse_rate(str(rate))
        self._held: VideoFrame | None = None
        self._next_slot = 0
        self._step = 0.0  # seconds from the picture before the held one to it

    def output_format(self, fmt):
        if fmt is None:
            return None
        return VideoFormat(fmt.width, fmt.height, fmt.pixel_format, float(self.rate), fmt.sar)

    def process(self, frame: VideoFrame) -> list:
        slot = self._slot(frame.time)
        if self._held is None:
            self._next_slot = slot
            out = []
        else:
            out = self._fill(slot)
            self._step = frame.time - self._held.time
        self._held = frame
        return out

    def flush(self) -> list:
        if self._held is None:
            return []
        out = self._fill(self._slot(self._held.time + (self._held.duration or self._step)))
        self._held = None
        return out

    def _slot(self, seconds: float) -> int:
        """The nearest slot, a half away from zero as AV_ROUND_NEAR_INF (Python's round() goes to
        even: 30 -> 25 fps put the picture at 0.1 s in slot 2, FFmpeg in 3). Timestamps come from a
        container's time base, so a product within 1e-9 of a half is a half."""
        position = abs(seconds * self.rate)
        return int(math.copysign(math.floor(position + 0.5 + 1e-9), seconds))

    def _fill(self, until_slot: int) -> list:
        out = []
        while self._next_slot < until_slot:
            time, duration = float(self._next_slot / self.rate), float(1 / self.rate)
            out.append(self._held.replace(time=time, duration=duration))
            self._next_slot += 1
        return out


# lkplug's own bounds for fps: (FFmpeg's filter takes any positive rate)
RATE_RANGE = (Fraction(1, 10), Fraction(1000))


def parse_rate(text: str) -> Fraction:
    """A frame rate as FFmpeg's fps filter reads it, by FFmpeg's own parser (a filter graph, whose
    output time base is 1/rate): 25, 29.97, 30000/1001, ntsc, pal, film, ntsc-film (which the
    filter reads as the expression ntsc - film, 5.97: 24000/1001 is the 23.976 rate). Raises
    UsageError for text FFmpeg refuses and for a rate outside [0.1, 1000]."""
    import av
    import av.filter

    usage = (
        f"fps:{text}: expected a frame rate as ffmpeg's fps filter takes it:"
        " 25, 29.97, 30000/1001, ntsc, pal, film"
    )
    if not text or any(mark in text for mark in ":=,;[]'\\"):  # the filter graph's own syntax
        raise UsageError(usage)
    try:
        graph = av.filter.Graph()
        buffer = graph.add_buffer(width=2, height=2, format="gray", time_base=Fraction(1, 1))
        fps, sink = graph.add("fps", text), graph.add("buffersink")
        buffer.link_to(fps)
        fps.link_to(sink)
        graph.configure()
        for pts in (0, 20):  # the filter gives its first picture once it has one 2 slots on (at 0.1 fps)
            picture = av.VideoFrame(2, 2, "gray")
            picture.pts, picture.time_base = pts, Fraction(1, 1)
            graph.vpush(picture)
        time_base = graph.vpull().time_base
    except av.error.FFmpegError:
        raise UsageError(usage) from None
    rate = 1 / Fraction(time_base)
    low, high = RATE_RANGE
    if not low <= rate <= high:
        raise UsageError(
            f"fps:{text} is {float(rate):g} frames per second: expected a rate in"
            f" [{float(low):g}, {float(high):g}]"
        )
    return rate
