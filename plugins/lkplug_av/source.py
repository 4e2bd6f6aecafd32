"""The ``file`` source: demux and decode packet by packet, so a damaged packet is skipped (and
counted) the way the ffmpeg CLI does instead of ending the file; decoded length, not the header,
is the truth about how long a file is.

Audio comes out in the file's own rate and layout, gathered into blocks (1 s; 0.1 s when paced
or beside video); video as one
frame per picture in one of lkplug's pixel formats. With both, the frames keep the file's interleaving
and share one clock (seconds from the start of the file, or from ``start=``)."""

from __future__ import annotations

import asyncio
import bisect
import os
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np

from lkplug import AudioFormat, AudioFrame, MediaError, Source, UsageError, VideoFormat, VideoFrame
from lkplug.frames import PIXEL_FORMATS

from .wavcheck import announced_seconds, wav_reader

# decoded audio is gathered into blocks: fewer, larger frames downstream cost less per second of
# media (1 s against 0.5 s: 0.87-0.97 s of CPU against 0.98-1.18 s for the bench's 10-minute M4A
# job); a run paced to real time (a file played into a room) gets short ones, for an even flow, and
# so does audio beside video
BLOCK_SECONDS = 1.0
PACED_BLOCK_SECONDS = 0.1
# audio that ends this much before its header says is told as a file cut short: whole files made
# here ended within 0.05 s of their headers (ADPCM WAV 0.042 s short, AAC and MP3 longer), and of the
# shared media's 200 readable files it tells 3, each holding far less than its header claims
CUT_SHORT_SECONDS = 0.25
CUT_SHORT_SHARE = 0.01
# FFmpeg's warning (libavformat's estimate_timings_from_bit_rate) where it made a length up
BITRATE_GUESS = "Estimating duration from bitrate"
# libsndfile subtype -> the sample format FFmpeg's PCM decoder gives for it, where it is not lkplug's
# (pcm_s24le and pcm_s32le decode to s32, pcm_s8 to u8, the G.711 laws to s16)
SOUNDFILE_AS_FFMPEG = {
    "PCM_24": "s32",
    "PCM_32": "s32",
    "DOUBLE": "dbl",
    "PCM_U8": "u8",
    "PCM_S8": "u8",
    "ULAW": "s16",
    "ALAW": "s16",
}
_S16 = ("s16", "s16p", "u8", "u8p")  # u8 widens to s16 exactly (ffmpeg gives an encoder s16 for it too)
# a decoded frame that starts this much later than the audio before it ended leaves a hole
HOLE_SECONDS = 0.005
# a bigger jump is a broken timestamp, not a hole (ffmpeg's -dts_delta_threshold)
DISCONTINUITY_SECONDS = 10.0
AVFMT_TS_DISCONT = 0x0200  # avformat.h: the format allows timestamp discontinuities (MPEG-TS)
# how far back a stream's time may step before it counts as a new piece (ffmpeg: 0.1 s, ffmpeg.c's
# ts_discontinuity_detect)
TS_DISCONT_SECONDS = 0.1
# sample formats copied straight from the decoder's planes: name -> (dtype, planar); any other
# (u8 to s16; s64, dbl to flt) is converted by libswresample, frame by frame
_DIRECT = {
    "s16": (np.int16, False),
    "s16p": (np.int16, True),
    "flt": (np.float32, False),
    "fltp": (np.float32, True),
    # s32 (24-bit FLAC and ALAC, pcm_s24le) is gathered as it is and made flt a block at a time, as
    # libswresample makes it (x * 2^-31 in float: the same samples, bit for bit): converting each
    # decoded frame through libswresample cost 0.07 s of a 2-minute FLAC's 0.3 s
    "s32": (np.int32, False),
    "s32p": (np.int32, True),
}
S32_SCALE = np.float32(1.0 / (1 << 31))  # libswresample's s32 -> flt: (float)x * (1.0f / (1U << 31))
_KIND = {"a": "audio", "v": "video"}
_NEVER = object()  # a pts no frame has
# FFmpeg 8's Ogg demuxer's messages where a chained Ogg's link changes format (rate or channels)
OGG_LINK_CHANGE = (
    "failed to create or replace stream",
    "Channel change is not supported",
    "Sample rate change is not supported",
    "Packet processing failed: Not yet implemented",
)


@contextmanager
def ffmpeg_errors(errors: list[str], level: int | None = None):
    """FFmpeg's error messages while inside (from every thread: decoders run frame threads) are
    added to ``errors`` at the end, not printed, each one counted (not collapsed into "repeated N
    times"). Gives the list of (level, name, text) that they gather in as they come: down to
    ``level`` (``av.logging.WARNING``: warnings too; only errors go into ``errors``)."""
    import av.logging

    before, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR if level is None else level)
    av.logging.set_skip_repeated(False)
    capture = av.logging.Capture(local=False)
    try:
        with capture as logs:
            yield logs
    finally:
        av.logging.set_level(before)
        av.logging.set_skip_repeated(skip)
        errors += [text.strip() for severity, _name, text in logs if severity <= av.logging.ERROR]


def open_container(path: str):
    import av

    if not Path(path).exists():
        raise MediaError(f"no such file: {path}")
    if Path(path).is_dir():
        raise MediaError(f"{path} is a folder, not a media file")
    try:
        return av.open(path, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {path}: not a media file FFmpeg can open ({exc.strerror})") from None


def pixel_format_for(fmt, width: int, height: int) -> str:
    """The lkplug pixel format a decoder's PyAV ``VideoFormat`` is delivered in (converted when it
    differs): its own when lkplug has it, else the nearest of yuv420p, rgb24, rgba and gray."""
    name = "yuv420p" if fmt.name == "yuvj420p" else fmt.name  # same planes; its range is converted
    odd = width % 2 or height % 2  # 4:2:0 needs even sizes; keep every pixel as RGB instead
    if name in PIXEL_FORMATS and not (odd and name in ("yuv420p", "nv12")):
        return name
    if len(fmt.components) <= 2 and not fmt.is_rgb:
        return "gray"
    if any(c.is_alpha for c in fmt.components):
        return "rgba"
    return "rgb24" if fmt.is_rgb or odd else "yuv420p"


def layout_name(layout) -> str:
    """FFmpeg's name for a PyAV layout; channels in no stated order (PCM in Matroska: "1 channels")
    get FFmpeg's default layout for their count, as the ffmpeg CLI guesses one for its encoders."""
    name = layout.name
    if name.endswith(" channels") and name.split()[0].isdigit():
        import av

        return av.AudioLayout(f"{layout.nb_channels}c").name
    return name


def sample_aspect(stream) -> tuple[int, int] | None:
    """A video stream's sample aspect ratio as the ffmpeg CLI takes it: the container's (MP4's pasp,
    Matroska's display size) over the bitstream's (H.264's VUI), as av_guess_sample_aspect_ratio
    decides; None when neither states one (0:1)."""
    sar = stream.sample_aspect_ratio
    return (sar.numerator, sar.denominator) if sar else None


def turned_sar(sar: tuple[int, int] | None) -> tuple[int, int] | None:
    """The SAR of a picture turned a quarter round: its inverse, as FFmpeg's transpose filter sets
    it (ffmpeg's autorotate of a 720x480 32:27 picture gives 480x720 27:32)."""
    return None if sar is None else (sar[1], sar[0])


UNSPECIFIED = 2  # H.273's code point for matrix, primaries and transfer alike


def color_of(frame) -> tuple[int, int, int] | None:
    """A decoded picture's colour description (matrix, primaries, transfer), None when unstated."""
    color = (frame.colorspace, frame.color_primaries, frame.color_trc)
    return None if all(value in (0, UNSPECIFIED) for value in color) else color


def hdr_note(frame) -> list[str]:
    """One warning when the first picture holds HDR metadata, which lkplug does not carry: its
    pictures are 8-bit and its encoders are given no mastering display or light level (ffmpeg 5.1's
    libx264 drops both too; the colour description, PQ or HLG transfer included, is carried)."""
    from av.sidedata.sidedata import Type

    found = [
        name
        for kind, name in (
            (Type.MASTERING_DISPLAY_METADATA, "mastering display"),
            (Type.CONTENT_LIGHT_LEVEL, "content light level"),
        )
        if frame.side_data.get(kind) is not None
    ]
    if not found:
        return []
    return [
        f"HDR metadata ({', '.join(found)}) is not carried into the output (8-bit, colour description only)"
    ]


def is_full_range(frame) -> bool:
    """Full-range ("JPEG") YUV: yuvj formats, or a frame flagged so."""
    return frame.format.name.startswith("yuvj") or (
        frame.color_range == 2 and not frame.format.is_rgb and frame.format.name != "gray"
    )


def orientation(frame) -> tuple[bool, bool, bool]:
    """How to show a decoded picture, from its display matrix: (transpose, mirror left-right, mirror
    top-bottom), applied in that order. The matrix maps stored (x, y) to shown (a*x + c*y, b*x + d*y)
    with a, b, c, d of -1, 0 or 1 for the turns and flips phones and cameras write."""
    from av.sidedata.sidedata import Type

    side = frame.side_data.get(Type.DISPLAYMATRIX)
    if side is None:
        return (False, False, False)
    a, b, _, c, d = (round(value / 65536) for value in np.frombuffer(bytes(side), "<i4")[:5])
    if a == 0 and d == 0:  # a quarter turn: x' = c*y, y' = b*x
        return (True, c < 0, b < 0)
    return (False, a < 0, d < 0)


def orient(data: np.ndarray, pixel_format: str, width: int, height: int, how: tuple[bool, bool, bool]):
    """The picture as shown (see ``orientation``), as ffmpeg's autorotate turns and mirrors it;
    returns (data, width, height). YUV planes are turned one by one."""
    transpose, mirror, flip = how

    def turn(plane: np.ndarray) -> np.ndarray:
        if transpose:
            plane = plane.swapaxes(0, 1)
        if mirror:
            plane = plane[:, ::-1]
        if flip:
            plane = plane[::-1]
        return plane

    width_out, height_out = (height, width) if transpose else (width, height)
    if pixel_format == "yuv420p":
        # by element, not by row: a chroma plane ends mid-row when the height is not a multiple of 4
        flat, luma, chroma = data.reshape(-1), width * height, (width // 2) * (height // 2)
        planes = [
            data[:height],
            flat[luma : luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2),
        ]
        out = np.concatenate([turn(plane).ravel() for plane in planes])
        return out.reshape(height_out * 3 // 2, width_out), width_out, height_out
    if pixel_format == "nv12":
        planes = [data[:height], data[height:].reshape(height // 2, width // 2, 2)]
        out = np.concatenate([turn(plane).ravel() for plane in planes])
        return out.reshape(height_out * 3 // 2, width_out), width_out, height_out
    return np.ascontiguousarray(turn(data)), width_out, height_out


# audio decoders that have FFmpeg's frame threads (FLAC, ALAC, WavPack, TTA, TAK) decode on them, as
# in the ffmpeg CLI. Decode alone, 10 minutes, on a quiet machine (SCHED_FIFO): FLAC 0.64-0.75 ->
# 0.49 s, ALAC 1.55 -> 0.91 s, WavPack 1.25 -> 0.66-0.73 s; the FLAC job, medians of 5, ffmpeg = 1.00:
# 1.98x -> 1.67x under SCHED_FIFO, 1.65x -> 1.40x at load 9, for 0.1-0.26 s more CPU (thousands of
# hand-offs between threads). MP3's, AAC's and Opus's decoders have none (Opus: 0.98 s either way,
# one context switch; the 1.95 -> 1.35 s once measured for it was the machine's load)
FRAME_THREADS = 1 << 12  # avcodec.h: AV_CODEC_CAP_FRAME_THREADS


def decoder_threads(stream) -> None:
    """FFmpeg's frame threads for video (H.264) and for the audio decoders that have them; not for
    audio in a batch's worker process, whose siblings keep the other cores busy."""
    if stream.type != "audio":
        stream.thread_type = "AUTO"
    elif stream.codec_context.codec.capabilities & FRAME_THREADS and not _worker_process():
        stream.thread_type = "AUTO"


def _worker_process() -> bool:
    """Whether this is a worker of a process pool (lkplug.batch runs one file per worker and core)."""
    import sys

    multiprocessing = sys.modules.get("multiprocessing")  # a pool's worker has it imported
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def parse_streams(text: str) -> list[tuple[str, int]]:
    """``a:0``, ``v:0`` or both joined by ``+`` (``a:1+v:0``) -> [(kind, index)]."""
    picked = []
    for part in filter(None, text.split("+")):
        letter, _, index = part.partition(":")
        if letter not in _KIND or not index.isdigit():
            raise UsageError(f"file: stream={text!r}: expected a:N, v:N or both as a:N+v:N (as ffmpeg -map)")
        picked.append((_KIND[letter], int(index)))
    return picked


class FileSource(Source):
    batch_param = "path"  # a glob or @list here runs one pipeline per file (lkplug.batch)

    def __init__(
        self,
        path: str,
        stream: str = "",
        video: bool | None = None,
        start: float = 0.0,
        duration: float = 0.0,
        loop: int = 1,
    ):
        if not path:
            raise UsageError("the file source needs a path: file:talk.m4a (or a glob, file:'rec/*.wav')")
        self.path = path
        self.reads = (path,)
        self.wanted = parse_streams(stream)
        self.video = video
        self.start = start
        self.limit = duration or None
        self.loop = loop
        self.kinds = None
        self.block_seconds = BLOCK_SECONDS
        self.container = None
        self.streams: dict = {}  # kind -> PyAV stream (FFmpeg path)
        self.reader = None  # "soundfile": a WAV read through libsndfile (RIFX, plain PCM)
        self.opus_decoder = None  # the first Opus link's decoder, decoding a chained Ogg's later links
        self.links_opened = 0  # later links of a chained Ogg opened on their own (they change format)
        self.formats: dict | None = None
        self.skipped = 0
        self.errors: list[str] = []  # FFmpeg's error messages while decoding
        self.warnings: list[str] = []
        self.length: float | None = None  # the header's length of the file, in seconds
        # (start, length) in seconds of the audio the header announces, where it says (see _cut_short)
        self.announced: tuple[float, float] | None = None
        self.mix: tuple | None = None  # (function, layout) of a downmix taken on (take_channel_mix)

    def bind(self, context) -> None:
        self.kinds = context.kinds
        self.block_seconds = PACED_BLOCK_SECONDS if context.pace else BLOCK_SECONDS

    # opening --------------------------------------------------------------------------------

    def probe(self) -> dict:
        if self.formats is None:
            audio_only = all(kind == "audio" for kind, _ in self.wanted) and self.kinds != {"video"}
            self.reader = wav_reader(self.path) if audio_only else None
            self.formats = self._probe_soundfile() if self.reader else None
            if self.formats is None:
                self.reader = None
                self.formats = self._open()
            length = self.length = self.duration
            if length is not None:
                length = max(0.0, length - self.start)
                if self.limit:
                    length = min(length, self.limit)
                self.duration = length * self.loop if self.loop else None
        return self.formats

    def take_channel_mix(self, stage, fmt):
        """The chain starts with a downmix: made here, from each block as FFmpeg's FIFO holds it
        (planar for most decoders), by the stage's own libswresample set-up (``stage.mixer``), saving
        the interleaved copy the stage would make a PyAV frame of again (a 2-minute MP3 to mono:
        0.04 s of 0.40). Audio that FFmpeg decodes to s16 or flt only: libsndfile's blocks are
        interleaved already, and s32 is made flt a block at a time here."""
        mixer = getattr(stage, "mixer", None)
        if mixer is None or self.reader is not None or fmt.ffmpeg_format not in ("s16", "flt"):
            return None
        mixed = stage.output_format(fmt)
        self.mix = (mixer(fmt), mixed.layout)
        return mixed

    def _open(self) -> dict:
        import av.logging

        # opening reads the first packets: damage there counts too
        with ffmpeg_errors(self.errors, av.logging.WARNING) as said:
            self.container = open_container(self.path)
        # where no header gives the length (raw AAC, an MP3 without a Xing frame), FFmpeg guesses it
        # from the bitrate of the first packets, which a VBR stream starting quietly overstates
        guessed = any(text.startswith(BITRATE_GUESS) for _level, _name, text in said)
        self.streams = self._select(self.container)
        formats = {}
        for kind, stream in self.streams.items():
            decoder_threads(stream)
            ctx = stream.codec_context
            if kind == "audio":
                # the header's (Xing, STREAMINFO, moov, fact), not FFmpeg's guess
                if stream.duration and stream.time_base and not guessed:
                    # where the stream starts on the clock of the decoded frames (the container's start is 0)
                    origin = float((stream.start_time or 0) * stream.time_base) - self._origin()
                    self.announced = (origin, float(stream.duration * stream.time_base))
                fmt = "s16" if ctx.format is not None and ctx.format.name in _S16 else "flt"
                decoded = ctx.format.packed.name if ctx.format is not None else ""
                ok = ctx.sample_rate and ctx.channels
                layout = layout_name(ctx.layout) if ok else ""
                formats[kind] = (
                    AudioFormat(ctx.sample_rate, ctx.channels, fmt, layout=layout, ffmpeg_format=decoded)
                    if ok
                    else None
                )
            else:
                fps = float(stream.average_rate or stream.guessed_rate or 0) or None
                pixel = pixel_format_for(ctx.format, ctx.width, ctx.height) if ctx.format else "yuv420p"
                ok = ctx.width and ctx.height
                width, height, sar = ctx.width, ctx.height, sample_aspect(stream)
                if ok and self._turned(stream):  # shown a quarter turn round: as displayed
                    width, height, sar = height, width, turned_sar(sar)
                formats[kind] = VideoFormat(width, height, pixel, fps, sar) if ok else None
        self.duration = self._header_duration()
        return formats

    def _origin(self) -> float:
        """The container's start, in seconds: time 0 of the decoded frames' clock."""
        return (self.container.start_time or 0) / 1_000_000

    def _turned(self, stream) -> bool:
        """Whether the stream's display matrix turns it a quarter round, read from its first
        picture: PyAV shows the matrix on decoded frames only."""
        import av

        try:
            with av.open(self.path, metadata_errors="replace") as container:
                picture = next(container.decode(container.streams[stream.index]))
        except (av.error.FFmpegError, StopIteration):
            return False
        return orientation(picture)[0]

    def _select(self, container) -> dict:
        audio = list(container.streams.audio)
        video = [s for s in container.streams.video if not s.disposition & s.disposition.attached_pic]
        available = {"audio": audio, "video": video}
        if self.wanted:
            picked = {}
            for kind, index in self.wanted:
                if index >= len(available[kind]):
                    count = len(available[kind])
                    found = f"only {count}" if count else "no"
                    raise MediaError(f"{self.path}: has {found} {kind} stream(s), wanted {kind[0]}:{index}")
                picked[kind] = available[kind][index]
            return picked
        kinds = self.kinds
        want_audio = kinds is None or "audio" in kinds
        want_video = self.video if self.video is not None else kinds is not None and "video" in kinds
        picked = {}
        if want_audio and audio:
            picked["audio"] = audio[0]
        if want_video and video:
            picked["video"] = video[0]
        if not picked:
            wanted = "audio" if want_audio else "video"
            other = "video" if video and want_audio else "audio" if audio and not want_audio else ""
            if other:  # the run takes none of the kinds the file has: a usage error, as the engine's
                raise UsageError(
                    f"{self.path}: has no {wanted} stream, only {other}, and no stage here takes {other}"
                )
            raise MediaError(f"{self.path}: no {wanted} stream")
        return picked

    def _probe_soundfile(self) -> dict | None:
        import soundfile

        try:
            info = soundfile.info(os.fsencode(self.path))  # bytes: any name the OS allows
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            with open(self.path, "rb") as file:
                if file.read(4) != b"RIFX":
                    return None  # FFmpeg may still read it
            raise MediaError(f"cannot read {self.path}: {exc}") from None
        for kind, index in self.wanted:  # a file libsndfile reads holds one audio stream
            if index:
                raise MediaError(f"{self.path}: has only 1 {kind} stream(s), wanted {kind[0]}:{index}")
        self.duration = info.frames / info.samplerate if info.samplerate else None
        announced = announced_seconds(self.path)
        self.announced = (0.0, announced) if announced is not None else None
        fmt = "s16" if info.subtype in ("PCM_16", "PCM_S8", "PCM_U8") else "flt"
        layout = _ffmpeg_layout(self.path) if info.channels > 2 else ""  # libsndfile does not say
        decoded = SOUNDFILE_AS_FFMPEG.get(info.subtype, "")
        return {
            "audio": AudioFormat(info.samplerate, info.channels, fmt, layout=layout, ffmpeg_format=decoded)
        }

    def _header_duration(self) -> float | None:
        """Only an estimate for progress: some containers' headers are wrong by orders of magnitude."""
        for stream in self.streams.values():
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
        if self.container.duration:
            return self.container.duration / 1_000_000
        return None

    # decoding -------------------------------------------------------------------------------

    async def frames(self):
        self.probe()
        # beside video, short audio blocks keep the two kinds close together on their way to a muxer
        block = self.block_seconds
        if "video" in self.streams:
            block = min(block, PACED_BLOCK_SECONDS)
        layout = self.formats["audio"].layout if self.reader else ""
        clock = _Clock(self.limit, block, set(self.streams) or {"audio"}, layout, self.mix)
        if "video" in self.streams:
            clock.sar = sample_aspect(self.streams["video"])
        plays = 0
        while not self.loop or plays < self.loop:
            if plays:
                self._reopen()
            produced = 0
            # decoded on this thread: a decoding thread ahead of the chain was measured slower on a quiet
            # machine for every format (load 1.5-2, ffmpeg = 1.00: FLAC 1.60x inline, 1.79x threaded;
            # Opus 1.54x / 1.67x). Why: when both threads run at once they pass the GIL back and forth
            # between the decoder's per-frame Python and the chain's many short numpy and soxr calls
            # (10-minute M4A under SCHED_FIFO: 9,400 voluntary context switches against 87 inline,
            # CPU 1.06 -> 1.34 s, wall 0.97 s both ways; a WAV read by libsndfile, whose reads release
            # the GIL, 0.48 -> 0.54 s). Under load the two rarely run at once (1,200 switches at load
            # 9), which is why it won there: a second runnable thread gets a second share of the cores
            blocks = self._one_pass(clock)
            try:
                for frame in blocks:
                    produced += 1
                    yield frame
                    if produced % 8 == 0:
                        await asyncio.sleep(0)
            finally:  # also when the run stops early: the decoding thread ends and the file closes
                blocks.close()
            for frame in clock.end_pass():
                produced += 1
                yield frame
            plays += 1
            if clock.done or not produced:
                break
        if self.skipped or self.errors:
            self.warnings.append(self._damage_report())
        if not (self.skipped or self.errors or clock.done) and (short := self._cut_short(clock)):
            self.warnings.append(short)
        self.warnings += [f"{self.path}: {note}" for note in clock.notes()]
        if not clock.emitted and self.start and (clock.file_end or self.length):
            length = clock.file_end or self.length
            raise MediaError(f"{self.path}: start={self.start:g} is past the end: the file is {length:.2f} s")
        if not clock.emitted:
            what = " or ".join(self.streams) if self.streams else "audio"
            raise MediaError(f"{self.path}: no {what} could be decoded")

    def _one_pass(self, clock):
        decoded = self._read_soundfile() if self.reader else self._decoded()
        try:
            for frame in clock.frames(decoded, self.start, len(self.streams) > 1):
                yield frame
                if clock.done:
                    break
        finally:
            decoded.close()  # ends FFmpeg's log capture now, not whenever it is collected

    def _cut_short(self, clock) -> str | None:
        """A note when the audio decoded to the end of the file is shorter than its header announces
        (a copy or a recording that did not finish), by more than a header's rounding: the samples
        end where the file does, with no decoder error. ffmpeg notes some of these ("filesize and
        duration do not match" for an MP3 with a Xing header, "corrupt input packet" for a WAV) and
        decodes what is there, as lkplug does."""
        if self.announced is None:
            return None
        origin, length = self.announced
        there = clock.file_end - origin
        if length - there <= max(CUT_SHORT_SECONDS, CUT_SHORT_SHARE * length):
            return None
        return (
            f"{self.path}: the file ends before the audio its header announces:"
            f" {max(0.0, there):.2f} s of {length:.2f} s are there"
        )

    def _damage_report(self) -> str:
        parts = [f"skipped {self.skipped} packet(s) that failed to decode"] if self.skipped else []
        if self.errors:
            first = self.errors[0].rstrip(".")
            parts.append(f"FFmpeg reported {len(self.errors)} error(s), the first: {first}")
        return f"{self.path}: damaged input, decoded past it: " + "; ".join(parts)

    def _reopen(self) -> None:
        self.opus_decoder = None
        if self.container is not None:
            self.container.close()
            self.container = open_container(self.path)
            self.streams = self._select(self.container)
            for stream in self.streams.values():
                decoder_threads(stream)

    def _decoded(self):
        """(kind, seconds from the file's start, PyAV frame) for one pass over the file. FFmpeg's own
        error messages are captured (from every thread: decoders run frame threads), not printed:
        the run ends with one warning line instead."""
        try:
            with ffmpeg_errors(self.errors) as logs:
                yield from self._demux_and_decode(logs)
        finally:
            if self.links_opened:
                # the Ogg demuxer's words about a link that changes format are no damage; they reach
                # the log when FFmpeg next flushes it (a page early, or in the next link's probe)
                self.errors[:] = [text for text in self.errors if not text.startswith(OGG_LINK_CHANGE)]

    def _demux_and_decode(self, logs: list):
        """Packet by packet: a packet that fails to decode is counted and skipped. ``logs``: FFmpeg's
        messages so far (``ffmpeg_errors``'s)."""
        import av

        container = self.container
        origin = self._origin()
        if self.start:
            self._seek(origin + self.start)
            container = self.container  # opened again where the seek failed
        kind_of = {stream.index: kind for kind, stream in self.streams.items()}
        vorbis = {s.index for s in self.streams.values() if s.codec_context.name == "vorbis"}
        demux = container.demux(*self.streams.values())
        # formats whose timestamps may start again (MPEG-TS): a stream going back in time is a new
        # piece that continues where the last ended, for every stream, as ffmpeg's demuxer offsets it
        discontinuous = bool(container.format.flags & AVFMT_TS_DISCONT)
        shift, expected = 0.0, {}  # seconds added to the file's clock; kind -> where it goes on
        audio_end = None  # where the last decoded audio ended, in the file's clock
        # where the links of a chained Ogg begin: a later link's timestamps say nothing of where it goes
        links = ogg_links(self.path) if container.format.name == "ogg" else []
        link = 0  # the link of the last packet read (0: the first, or no Ogg)
        position = 0  # byte position of the last packet read
        tags: dict[int, float] = {}  # stream index -> seconds the tags inside it were given (see _is_tag)
        while True:
            try:
                packet = next(demux)
            except (StopIteration, av.error.EOFError):
                return
            except av.error.FFmpegError as exc:
                if isinstance(exc, av.error.PatchWelcomeError) and container.format.name == "ogg":
                    # a chained Ogg's next link changes rate or channels: FFmpeg 8's demuxer stops
                    # there (ffmpeg 5.1 went on); the link is opened as a file of its own
                    container = self._next_ogg_link(position, exc)
                    kind_of = {stream.index: kind for kind, stream in self.streams.items()}
                    vorbis = {s.index for s in self.streams.values() if s.codec_context.name == "vorbis"}
                    demux = container.demux(*self.streams.values())
                    continue
                self.skipped += 1  # a broken container structure: nothing more can be read
                self.errors.append(str(exc))
                return
            said = len(logs)
            try:
                decoded = self.opus_decoder.decode(packet) if self.opus_decoder else packet.decode()
            except av.error.FFmpegError:
                decoded = None
            index = packet.stream.index  # (not stream_index: 0 in the flushing packets PyAV adds)
            if not decoded and _is_tag(packet, container):
                del logs[said:]  # its "Header missing" is no damage
                if packet.duration and packet.time_base:
                    tags[index] = tags.get(index, 0.0) + float(packet.duration * packet.time_base)
                continue
            if decoded is None:
                self.skipped += 1
                continue
            kind = kind_of[index]
            position = packet.pos if packet.pos is not None and packet.pos >= 0 else position
            link_begins = False
            if links and position >= links[min(link + 1, len(links) - 1)] > links[link]:
                link, link_begins = bisect.bisect_right(links, position) - 1, True
            for frame in decoded:
                seconds = frame.time
                if seconds is not None and index in tags:
                    seconds -= tags[index]  # the audio after a tag follows the audio before it
                if link and kind == "audio":
                    # a later link of a chained Ogg follows the audio before it, sample after sample, as
                    # ffmpeg 5.1 plays it: FFmpeg 8 gives its first packet the time where the link
                    # before ended and the rest the link's own clock from 0 (a hole, then a step back)
                    if link_begins:
                        frame = _first_of_link(frame, packet)
                    seconds = audio_end
                elif seconds is not None and index in vorbis:
                    seconds -= _beyond_packet(frame, packet)
                if seconds is None:
                    if kind == "audio":  # no timestamp (laced Matroska blocks): it follows the frame
                        seconds = audio_end  # before, as ffmpeg counts it, so start= still trims it
                elif discontinuous:
                    seconds += shift
                    due = expected.get(kind)
                    if due is not None and seconds < due - TS_DISCONT_SECONDS:
                        shift += due - seconds  # MPEG-TS pieces joined (cat a.ts b.ts, HLS): go on
                        seconds = due
                    expected[kind] = seconds + _length(frame)
                if kind == "audio" and seconds is not None:
                    audio_end = seconds + _length(frame)
                yield kind, (None if seconds is None else seconds - origin), frame

    def _next_ogg_link(self, position: int, exc):
        """The container of the chained Ogg's link after byte ``position``, opened on its own
        (FFmpeg's skip_initial_bytes), its audio selected. Raises MediaError where there is none
        or the run takes video too: FFmpeg cannot read on then."""
        import av

        offset = next((start for start in ogg_links(self.path) if start > position), None)
        if offset is None or set(self.streams) != {"audio"}:
            raise MediaError(
                f"{self.path}: FFmpeg cannot read past byte {position} of this Ogg file (a link that"
                f" changes format): {exc.strerror}"
            )
        first = self.streams["audio"].codec_context
        if self.opus_decoder is None and first.name == "opus":
            # ffmpeg 5.1 decodes every later Opus link with the first link's decoder: a mono link after
            # a stereo one comes out on both channels at full level (an Opus decoder's mono-to-stereo),
            # not upmixed at -3 dB; Opus is 48 kHz in every link, so the format never changes
            self.opus_decoder = first  # kept after its container closes: its state goes on, as in 5.1
        self.container.close()
        self.links_opened += 1
        try:
            self.container = av.open(
                self.path, metadata_errors="replace", options={"skip_initial_bytes": str(offset)}
            )
        except av.error.FFmpegError as error:
            raise MediaError(
                f"{self.path}: cannot read the Ogg link at byte {offset}: {error.strerror}"
            ) from None
        audio = list(self.container.streams.audio)
        if not audio:
            raise MediaError(f"{self.path}: the Ogg link at byte {offset} has no audio")
        self.streams = {"audio": audio[0]}
        decoder_threads(audio[0])
        return self.container

    def _seek(self, seconds: float) -> None:
        import av

        try:
            self.container.seek(int(seconds * 1_000_000), backward=True, any_frame=False)
        except av.error.FFmpegError:
            # not seekable: decode from the start (frames before start= are dropped anyway), in the
            # file opened again: a failed seek can leave the demuxer with nothing more to give (a
            # FLAC behind a padded ID3 tag gave no packets at all)
            self._reopen()

    def _read_soundfile(self):
        import soundfile

        with soundfile.SoundFile(os.fsencode(self.path)) as file:
            fmt = self.formats["audio"]
            dtype = "int16" if fmt.sample_format == "s16" else "float32"
            if self.start:
                file.seek(min(file.frames, round(self.start * file.samplerate)))
            position = file.tell()
            for block in file.blocks(
                round(file.samplerate * self.block_seconds), dtype=dtype, always_2d=True
            ):
                yield "audio", position / file.samplerate, _Samples(block, file.samplerate)
                position += len(block)

    async def aclose(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def ogg_links(path: str) -> list[int]:
    """Byte offsets where the links of a (chained) Ogg file begin: a page that begins a stream
    after pages that do not. Neither FFmpeg nor PyAV says where links begin, so the pages are
    walked as RFC 3533 lays them out: "OggS", version, flags (2: beginning of a stream), ..., the
    segment count at byte 26, then that many segment sizes, then the segments. The walk ends at
    anything that is not a page."""
    links, offset, in_headers = [], 0, False
    with open(path, "rb") as file:
        while len(head := file.read(27)) == 27 and head[:4] == b"OggS":
            sizes = file.read(head[26])
            begins = bool(head[5] & 2)
            if begins and not in_headers:
                links.append(offset)
            in_headers = begins
            offset += 27 + len(sizes) + sum(sizes)
            file.seek(offset)
    return links


def _ffmpeg_layout(path: str) -> str:
    """FFmpeg's name for the channel layout of a WAV's first audio stream (the channel mask), or ""."""
    import av

    try:
        with av.open(path, metadata_errors="replace") as container:
            return layout_name(container.streams.audio[0].codec_context.layout)
    except (av.error.FFmpegError, IndexError):
        return ""


def _is_tag(packet, container) -> bool:
    """Whether a packet of an MP3 file that gave no audio is an ID3 tag: MP3 files joined end to end
    (``cat a.mp3 b.mp3``) carry the second one's ID3v2 tag (and the first one's ID3v1 tag) inside the
    stream. FFmpeg's MP3 demuxer gives it the time of a frame; its decoder says "Header missing" (an
    ID3v2 tag) or gives nothing (ID3v1). It holds no audio and no time: the ffmpeg CLI (and every
    player) plays what follows right after what came before, so it is no hole and no damage."""
    if container.format.name != "mp3":
        return False
    head = bytes(packet)[:3]
    return head in (b"ID3", b"TAG")


def _beyond_packet(frame, packet) -> float:
    """Seconds by which the one frame decoded from ``packet`` is longer than the packet: it ends where
    the packet ends. FFmpeg 8 gives a Vorbis frame its packet's time, but a long block followed by a
    short one decodes to more samples than the short one's packet holds (576 for 128): the frame
    began 448 samples earlier, where the frame before ended (ffmpeg 5.1 plays them end to end).
    Vorbis only: other decoders' packets may say less than their frames hold (a FLAC's)."""
    if not packet.duration or not packet.time_base or not frame.sample_rate:
        return 0.0
    held = float(packet.duration * packet.time_base)
    return max(0.0, frame.samples / frame.sample_rate - held)


def _first_of_link(frame, packet):
    """``frame``, decoded from the first packet of a later link of a chained Ogg, cut to the samples
    that packet holds. FFmpeg 8's Vorbis decoder gives the first packet of a link the length of the
    last block of the link before (576 samples for a 128-sample packet: 448 zeros, then the 128 that
    ffmpeg 5.1 gives); an Opus frame is shorter than its packet (pre-skip) and is kept whole."""
    import av

    if not packet.duration or not packet.time_base:
        return frame
    held = round(packet.duration * packet.time_base * frame.sample_rate)
    if frame.samples <= held:
        return frame
    planes = frame.to_ndarray()
    channels = frame.layout.nb_channels
    kept = planes[:, -held:] if frame.format.is_planar else planes[:, -held * channels :]
    cut = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(kept), format=frame.format.name, layout=frame.layout
    )
    cut.sample_rate, cut.time_base, cut.pts = frame.sample_rate, frame.time_base, frame.pts
    return cut


def _length(frame) -> float:
    """Seconds a decoded frame lasts (0: unknown)."""
    if isinstance(frame, _Samples):
        return len(frame.data) / frame.sample_rate
    if hasattr(frame, "sample_rate"):
        return frame.samples / frame.sample_rate if frame.sample_rate else 0.0
    return float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0


class _Samples:
    """Already-converted samples, shaped like a decoded PyAV frame for ``_Clock``."""

    pts = None  # never steady: a block is gathered as it is

    def __init__(self, data: np.ndarray, rate: int):
        self.data = data
        self.sample_rate = rate


class _Clock:
    """Turns decoded frames into lkplug frames on one timeline: trims what lies before ``start=``,
    gathers audio into blocks, cuts at ``duration=``, and carries time on across loops.

    Timestamps are the truth: audio that starts later than the audio before it ended (lost packets,
    DTX) starts a new block at its own time, leaving the hole for the sink (a muxer keeps it, a WAV
    sink fills it with silence); a jump beyond ffmpeg's discontinuity threshold is a broken timestamp
    and is ignored. Decoded audio that changes format mid-stream (an MP3 going from 44.1 to 48 kHz)
    is converted to the first format with libswresample, as the ffmpeg CLI does."""

    def __init__(
        self, limit: float | None, block_seconds: float, kinds: set[str], layout: str = "", mix=None
    ):
        self.limit = limit
        self.mix = mix  # (function, layout): the chain's downmix, made of each FIFO block
        self.kinds = kinds
        self.finished: set[str] = set()  # kinds that reached duration=
        self.block_seconds = block_seconds
        self.start = 0.0
        self.offset = 0.0  # seconds of the earlier passes (loop=)
        self.position: int | None = None  # sample number of the next audio block's first sample
        self.shift = 0.0  # seconds of the file's clock that are the audio's time 0 (audio alone)
        self.rate = 0
        self.layout = layout  # of blocks read through libsndfile (FFmpeg's frames name their own)
        self.fifo = None  # FFmpeg's AVAudioFifo, gathering the audio block
        self.fifo_key: tuple | None = None  # rate, sample format, channels of what it holds
        self.first: tuple | None = None  # rate, layout of the first decoded audio
        self.target = "flt"  # packed sample format that audio in another format is converted to
        self.converter = None  # libswresample (PyAV) for audio not in the first format
        self.converter_key: tuple | None = None
        self.converter_time: float | None = None  # seconds of the next sample out of the converter
        self.changes: list[str] = []  # warnings: HDR (and ``audio_change``'s, see ``notes``)
        # the first mid-stream change of the audio format: [media seconds, rate, layout, settled]
        self.audio_change: list | None = None
        self.emitted_video = False
        self.sar: tuple[int, int] | None = None  # the video stream's, as stored (before a turn)
        self.video_end = 0.0
        self.file_end = 0.0  # end of the last decoded frame in the file's own time (before start=)
        self.emitted = 0
        # the steady case, checked per decoded frame in a few attribute reads (see ``_steady``): the
        # pts that continues the audio exactly, and the layout it has; _NEVER while it does not hold
        self.next_pts = _NEVER
        self.steady_layout = None
        self.advance_key: tuple | None = None  # (time base, rate) that ``advances`` holds
        self.advances: dict[int, int] = {}  # samples in a frame -> pts it spans (when a whole number)

    @property
    def done(self) -> bool:
        """Every kind has reached duration= (one kind may get there first: files interleave)."""
        return self.finished >= self.kinds

    def frames(self, decoded, start: float, several: bool):
        self.start = start
        for kind, seconds, frame in decoded:
            if kind == "audio" and frame.pts == self.next_pts and frame.layout == self.steady_layout:
                # steady: the same format, continuing the audio in the FIFO exactly (no hole, nothing
                # to trim or convert): what ``_audio`` would do, without its per-frame Python
                samples = frame.samples
                frame.pts = None
                try:
                    self.fifo.write(frame)  # PyAV refuses another sample format or rate: not steady
                except ValueError:
                    frame.pts, self.next_pts = self.next_pts, _NEVER
                else:
                    advance = self.advances.get(samples)
                    self.next_pts = _NEVER if advance is None else self.next_pts + advance
                    end = seconds + samples / self.rate
                    if end > self.file_end:
                        self.file_end = end
                    if self.fifo.samples >= self.rate * self.block_seconds:
                        fifo = self.fifo
                        yield from self._emit_fifo()
                        self.fifo = fifo  # empty now: it gathers the next block
                        if self.done:
                            return
                    continue
            pts = frame.pts if kind == "audio" else None
            if seconds is not None:
                self.file_end = max(self.file_end, seconds + _length(frame))
                seconds -= start
            if kind == "audio":
                self.next_pts = _NEVER
                yield from self._audio(frame, seconds, several)
                self._steady(frame, pts, seconds)
            else:
                yield from self._video(frame, seconds)
            if self.done:
                return

    def _steady(self, frame, pts: int | None, seconds: float | None) -> None:
        """After ``frame`` went the whole way: whether the frames that continue it exactly may take the
        short way. They may when it went into the FIFO as it was (no converter, nothing trimmed for
        start=) and the FIFO ends where its time says: the hole test then stays below its threshold
        for every frame that continues it, its timestamps being exact."""
        if pts is None or seconds is None or isinstance(frame, _Samples) or self.converter is not None:
            return
        key = (frame.sample_rate, frame.format.name, frame.layout.nb_channels)
        if self.fifo is None or self.fifo_key != key:
            return
        if (self.start and seconds < 0) or self.rate != frame.sample_rate:
            return
        target = round((self.offset + max(0.0, seconds - self.shift)) * self.rate) + frame.samples
        if (target - self.position - self.fifo.samples) / self.rate >= HOLE_SECONDS / 2:
            return
        time_base, samples = frame.time_base, frame.samples
        if not time_base:
            return
        if (time_base, self.rate) != self.advance_key:
            self.advance_key, self.advances = (time_base, self.rate), {}
        if samples not in self.advances:
            advance = Fraction(samples) / (time_base * self.rate)  # pts units the frame spans
            if advance.denominator != 1:
                return  # not a whole number (a 1/1000 time base): every frame takes the whole way
            self.advances[samples] = int(advance)
        self.next_pts = pts + self.advances[samples]
        self.steady_layout = frame.layout

    def _audio(self, frame, seconds: float | None, several: bool) -> list:
        """Gather decoded frames in FFmpeg's own FIFO and make one array per block: per decoded
        frame (some 50 per second of audio) Python does almost nothing."""
        if isinstance(frame, _Samples):  # already a block (libsndfile reads whole blocks)
            return self._block(frame.data, frame.sample_rate, seconds, several)
        out = []
        for uniform, when in self._uniform(frame, seconds):
            out += self._gather(uniform, when, several)
        return out

    def _uniform(self, frame, seconds: float | None) -> list:
        """[(frame, seconds)]: ``frame`` in the first decoded rate and layout and a sample format
        lkplug takes (converted where it is not), each piece with its own time, so that start= trims
        converted audio (s32 of 24-bit FLAC and ALAC) to the sample as it does the rest; the
        converter's delayed output comes out with later frames."""
        name, rate, layout = frame.format.name, frame.sample_rate, layout_name(frame.layout)
        if self.first is None:
            self.first = (rate, layout)
            self.target = "s16" if name in _S16 else "flt"
        change = self.audio_change
        if (rate, layout) != self.first:
            if change is None:
                # media time, as the output has it (loop= passes and start= counted)
                when = self.offset + seconds if seconds is not None else self.position / self.rate
                self.audio_change = [when, rate, layout, False]
            elif not change[3]:
                # the format the frames after it settle on: the first frame of an MP3 joined to one of
                # another rate still carries the old rate (FFmpeg's decoder sets the new one after it)
                change[3] = change[1:3] == [rate, layout]
                change[1:3] = [rate, layout]
        elif change is not None:
            change[3] = True
        direct = (rate, layout) == self.first and name in _DIRECT
        key = (name, rate, layout)
        out = []
        if self.converter is not None and (direct or key != self.converter_key):
            out += self._drain_converter()
        if direct:
            return [*out, (frame, seconds)]
        if self.converter is None:
            import av

            self.converter = av.AudioResampler(format=self.target, layout=self.first[1], rate=self.first[0])
            self.converter_key = key
            self.converter_time = seconds
        elif rate == self.first[0] and seconds is not None:
            self.converter_time = seconds  # only the sample format or layout changes: nothing is held back
        frame.pts = None  # the converter's clock is not ours: this clock counts samples
        return out + self._timed(self.converter.resample(frame))

    def _timed(self, pieces) -> list:
        """[(piece, seconds)] for the converter's output: its first sample is the time of the first
        frame it was given (libswresample holds back its delay), then the samples it gave count on."""
        out = []
        for piece in pieces:
            out.append((piece, self.converter_time))
            if self.converter_time is not None:
                self.converter_time += piece.samples / piece.sample_rate
        return out

    def notes(self) -> list[str]:
        """The warnings of the pass: how the audio format changed mid-stream, HDR."""
        notes = []
        if self.audio_change is not None:
            when, rate, layout, _ = self.audio_change
            notes.append(
                f"audio changed mid-stream at {max(0.0, when):.2f} s ({self.first[0]} Hz {self.first[1]}"
                f" -> {rate} Hz {layout}); the rest is converted to the first format, as ffmpeg does"
            )
        return notes + self.changes

    def _drain_converter(self) -> list:
        if self.converter is None:
            return []
        converter, self.converter = self.converter, None
        return self._timed(converter.resample(None))

    def _gather(self, frame, seconds: float | None, several: bool) -> list:
        rate = frame.sample_rate
        skip = 0
        if self.start and seconds is not None and seconds < 0:  # decoded from the keyframe before start=
            skip = round(-seconds * rate)
            if skip >= frame.samples:
                return []
            seconds = 0.0
        out = []
        if self.position is None:
            self._start_position(rate, seconds, several)
        elif seconds is not None:
            target = round((self.offset + max(0.0, seconds - self.shift)) * rate)
            held = self.fifo.samples if self.fifo is not None else 0
            gap = (target - self.position - held) / rate
            if HOLE_SECONDS < gap < DISCONTINUITY_SECONDS:
                out += self._emit_fifo()
                self.position = target
        key = (rate, frame.format.name, frame.layout.nb_channels)
        if self.fifo is not None and key != self.fifo_key:
            out += self._emit_fifo()
        if self.fifo is None:
            import av

            self.fifo, self.fifo_key = av.AudioFifo(), key
        frame.pts = None  # the FIFO checks continuity of timestamps; the clock here counts samples
        self.fifo.write(frame)
        if skip:
            self.fifo.read(skip)
        if self.fifo.samples >= rate * self.block_seconds:
            out += self._emit_fifo()
        return out

    def _start_position(self, rate: int, seconds: float | None, several: bool) -> None:
        """Beside video, audio starts at its own time in the file; alone, at 0."""
        if several:
            self.shift = 0.0
            first = max(0.0, seconds) if seconds is not None else 0.0
        else:
            self.shift = seconds or 0.0
            first = 0.0
        self.position = round((self.offset + first) * rate)
        self.rate = rate

    def _block(self, data: np.ndarray, rate: int, seconds: float | None, several: bool) -> list:
        out = self._emit_fifo()
        if self.position is None:
            self._start_position(rate, seconds, several)
        return out + self._emit(data, self.layout)

    def _emit_fifo(self) -> list:
        fifo, self.fifo = self.fifo, None
        block = fifo.read() if fifo is not None else None
        if block is None:
            return []
        if self.mix is not None:  # straight from FFmpeg's planes (s16 or flt: see take_channel_mix)
            mix, layout = self.mix
            return self._emit(mix(block), layout)
        samples = block.samples
        dtype, planar = _DIRECT[block.format.name]
        if planar:  # one plane per channel, interleaved here in one pass per channel
            planes = block.planes
            data = np.empty((samples, len(planes)), dtype)
            for channel, plane in enumerate(planes):
                data[:, channel] = np.frombuffer(plane, dtype, count=samples)
        else:
            channels = block.layout.nb_channels
            data = np.frombuffer(block.planes[0], dtype, count=samples * channels)
            data = data.reshape(samples, channels).copy()
        if dtype is np.int32:
            data = data.astype(np.float32)
            data *= S32_SCALE
        return self._emit(data, layout_name(block.layout))

    def _emit(self, data: np.ndarray, layout: str) -> list:
        frame = AudioFrame(data, self.rate, self.position, layout)
        if self.limit is not None:
            frame = frame.until(self.limit)
            if frame is None or frame.samples < len(data):
                self.finished.add("audio")
            if frame is None:
                return []
        self.position += frame.samples
        self.emitted += 1
        return [frame]

    def _video(self, frame, seconds: float | None):
        if seconds is None:
            seconds = self.video_end - self.offset
        if self.start and seconds < -1e-6:
            return
        when = self.offset + seconds
        if self.limit is not None and when >= self.limit:
            self.finished.add("video")
            return
        length = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
        width, height = frame.width, frame.height
        pixel = pixel_format_for(frame.format, width, height)
        how = orientation(frame)
        if not self.emitted_video:
            self.emitted_video = True
            self.changes += hdr_note(frame)
        if is_full_range(frame):  # lkplug's YUV is limited range, as encoders expect by default
            limited = "MPEG" if pixel in ("yuv420p", "nv12") else None
            frame = frame.reformat(format=pixel, src_color_range="JPEG", dst_color_range=limited)
        elif pixel != frame.format.name:
            frame = frame.reformat(format=pixel)
        data = frame.to_ndarray()
        sar = self.sar
        if any(how):
            data, width, height = orient(data, pixel, width, height, how)
            if how[0]:
                sar = turned_sar(sar)
        self.video_end = max(self.video_end, when + length)
        self.emitted += 1
        yield VideoFrame(data, pixel, width, height, when, length, color_of(frame), sar)

    def end_pass(self):
        """After a pass: the last audio block, and the clock moved past everything this pass gave."""
        self.next_pts = _NEVER  # the next pass starts its timestamps again
        for frame, seconds in self._drain_converter():
            yield from self._gather(frame, seconds, False)
        yield from self._emit_fifo()
        audio_end = self.position / self.rate if self.position is not None and self.rate else 0.0
        self.offset = max(audio_end, self.video_end, self.offset)
        if self.position is not None:
            self.position = round(self.offset * self.rate)
