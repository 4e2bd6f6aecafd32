"""Processors and sinks that need nothing but numpy (and libswresample through PyAV for ``remix``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lkplug import AudioContract, AudioFrame, Processor, Sink, UsageError, VideoContract
from lkplug.convert import S16_SCALE
from lkplug.frames import LAYOUTS, SAMPLE_FORMATS, default_layout, is_integer_format


class Gain(Processor):
    emits = "float (flt) audio, whatever it takes: nothing is clipped here"
    # ffmpeg's equivalent, the volume filter, takes float (its default precision) and hands on
    # float: a downmix before a boost is mixed into float, unscaled; a boost of s16 is clipped (and
    # counted) only where it is next kept in an integer format; an encoder after it is given float
    works_in = "flt"

    def __init__(self, db: float = 0.0, factor: float | None = None):
        if factor is not None and db != 0.0:
            raise UsageError("gain: give db= or factor=, not both")
        self.factor = np.float32(factor if factor is not None else 10.0 ** (db / 20.0))
        # an attenuation commutes with a downmix (the planner then runs it on fewer channels); a
        # boost does not where the mix is scaled for an integer output
        self.per_channel_linear = bool(self.factor <= 1.0)

    def output_format(self, fmt):
        return replace(fmt, sample_format="flt")

    def process(self, frame) -> list:
        data = frame.data
        scale = self.factor / np.float32(S16_SCALE) if data.dtype == np.int16 else self.factor
        return [frame.replace(data=np.multiply(data, np.float32(scale), dtype=np.float32))]


class Remix(Processor):
    """Converts to another channel layout with libswresample's rematrixing (through PyAV), the same
    matrix the ffmpeg CLI uses for ``-ac`` and ``-ch_layout``: speakers missing in the output fold
    into the nearest ones (centre and surrounds at -3 dB), LFE is dropped in a downmix. As in FFmpeg,
    the matrix is scaled so the sum cannot clip when the audio is next kept in an integer format
    (an s16 WAV, s32 FLAC, an s16 encoder), and is not when it is kept as float (AAC, a float WAV):
    the engine says which (``mixes_into``); without a word, the frame's own format decides. s16
    kept as float is mixed into flt, as ffmpeg's one conversion from s16 to the float it keeps:
    a fold beyond full scale stays beyond it (a 0.9 in-phase stereo to mono peaks at 1.27)."""

    emits = "audio in the layout channels= gives, same rate and sample format (s16 kept as float: flt)"
    channel_mix = True

    def __init__(self, channels: str):
        import av

        self.layout = layout_name(channels)
        self.channels = av.AudioLayout(self.layout).nb_channels  # FFmpeg's count: 22.2 is 24
        self.kept_as = ""  # the sample format the output is next kept in ("": the frame's own)
        self._mix = None  # ``mixer``'s function for the frames' format (``_key``)
        self._key: tuple | None = None

    def output_format(self, fmt):
        return type(fmt)(fmt.rate, self.channels, self._mixed_as(fmt), fmt.frame_size, self.layout)

    def mixes_into(self, sample_format: str) -> None:
        """The engine's word: the output is next kept in ``sample_format`` (FFmpeg's name)."""
        self.kept_as = sample_format

    def _mixed_as(self, fmt) -> str:
        """The sample format a frame in ``fmt`` leaves in: flt for s16 that is mixed and kept as
        float (libswresample's s16 to flt conversion, unscaled), else its own."""
        mixed = fmt.layout != self.layout
        if mixed and fmt.sample_format == "s16" and self.kept_as and not is_integer_format(self.kept_as):
            return "flt"
        return fmt.sample_format

    def process(self, frame) -> list:
        layout = frame.format.layout
        if layout == self.layout:
            return [frame]
        import av

        key = (layout, frame.sample_rate, frame.sample_format, self.kept_as)
        if key != self._key:
            self._mix, self._key = self.mixer(frame.format), key
        packed = np.ascontiguousarray(frame.data).reshape(1, -1)
        mixed = av.AudioFrame.from_ndarray(packed, format=frame.sample_format, layout=layout)
        mixed.sample_rate = frame.sample_rate
        return [AudioFrame(self._mix(mixed), frame.sample_rate, frame.timestamp, self.layout)]

    def mixer(self, fmt):
        """The mix ``process`` makes of audio in ``fmt``, as a function of a PyAV AudioFrame (its
        samples in ``fmt``'s sample format, planar or packed; its channels in its own layout) that
        returns the samples, (samples, channels) in ``output_format(fmt)``'s sample format. For a
        source that holds FFmpeg's decoded frames (the file source): it mixes them as they are,
        rather than interleave them for this stage to make a PyAV frame of again."""
        import av

        out_fmt = self._mixed_as(fmt)
        # libswresample scales the matrix when its output format is integer (rematrix.c): float
        # frames bound for integer take rematrix_maxval=1, the scaling an s16 output gets; s16
        # frames bound for float are mixed into float, unscaled
        scaled = is_integer_format(self.kept_as or fmt.sample_format)
        options = {"rematrix_maxval": "1"} if scaled and fmt.sample_format == "flt" else None
        dtype, channels = SAMPLE_FORMATS[out_fmt], self.channels
        resamplers: dict[tuple, av.AudioResampler] = {}  # by the frames' own format (flt, fltp) and layout

        def mix(decoded) -> np.ndarray:
            # channels in no stated order ("2 channels": PCM in Matroska) are mixed as FFmpeg's default
            # layout for their count, by libswresample as by the ffmpeg CLI, which guesses it
            key = (decoded.format.name, decoded.layout.name)
            resampler = resamplers.get(key)
            if resampler is None:
                resampler = resamplers[key] = av.AudioResampler(
                    format=out_fmt, layout=self.layout, rate=decoded.sample_rate, options=options
                )
            # same rate in and out: libswresample only rematrixes, sample for sample, holding nothing
            # back; the output frames' own buffers, not copies (a view keeps its frame alive)
            out = [
                np.frombuffer(f.planes[0], dtype, count=f.samples * channels).reshape(-1, channels)
                for f in resampler.resample(decoded)
            ]
            if not out:
                return np.zeros((0, channels), dtype)
            return out[0] if len(out) == 1 else np.concatenate(out)

        return mix


def layout_name(text: str) -> str:
    """FFmpeg's name for a layout given as a channel count (``2``) or a layout name (``5.1(side)``,
    ``FL+FR+LFE``) that libswresample can mix into; UsageError, in one line, for anything else (a
    count FFmpeg has no layout for: 9, 64; a name it does not know; one it has no matrix for)."""
    import av

    text = text.strip()
    if text.isdigit():
        name = default_layout(int(text))
    else:
        try:
            name = av.AudioLayout(text).name
        except (ValueError, TypeError, av.error.FFmpegError):
            name = ""
    if not name or not mixes_into(name):
        counts = _ranges([n for n in range(1, 65) if mixes_into(default_layout(n))])
        if text.isdigit():
            what = f"FFmpeg has no layout of {text} channels to mix into"
        else:
            what = (
                "a layout libswresample has no matrix for"
                if name
                else "not a channel count or an FFmpeg layout name"
            )
        known = ", ".join(list(LAYOUTS)[:8])
        raise UsageError(
            f"remix: channels={text!r}: {what}; give a count ({counts}) or a layout name ({known}, ...;"
            " `ffmpeg -layouts` lists them)"
        )
    return name


def mixes_into(layout: str) -> bool:
    """True when libswresample (PyAV) builds a matrix from mono into ``layout``: every layout with
    speaker positions, and the counts FFmpeg has a default layout for ("10 channels" is 5.1.4)."""
    import av

    try:
        resampler = av.AudioResampler(format="flt", layout=layout, rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1), np.float32), format="flt", layout="mono")
        frame.sample_rate = 48000
        resampler.resample(frame)  # the matrix is built here, at the first frame
    except (ValueError, av.error.FFmpegError):
        return False
    return True


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 10, 12]`` as "1 to 3, 10, 12"."""
    parts, start = [], 0
    for index, number in enumerate(numbers):
        if index + 1 == len(numbers) or numbers[index + 1] != number + 1:
            first = numbers[start]
            parts.append(f"{first}" if first == number else f"{first} to {number}")
            start = index + 1
    return ", ".join(parts)


class NullSink(Sink):
    accepts = {"audio": AudioContract(), "video": VideoContract()}

    def __init__(self):
        self.frames = 0

    def write(self, frame) -> None:
        self.frames += 1
