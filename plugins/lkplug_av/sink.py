"""The ``file`` sink: encode and mux audio and video with FFmpeg (PyAV), streamed to disk.

The container is created when the first frames arrive (a run that fails before any media leaves no
file behind) and only once every expected kind has shown its first frame, since all streams must
exist before the header is written: a stream that starts late (audio 2 s after the video) is waited
for, up to ``WAIT_SECONDS`` of media. libavformat's interleaved writer puts packets in timestamp
order. ``close`` drains the encoders and writes the trailer on every exit path, Ctrl-C included.

Timestamps are kept: each picture keeps its own time (variable frame rate survives; ``fps:`` makes
it constant), audio keeps its start offset and its holes where the container carries timestamps
(mp4, mov, m4a, mkv, webm) and gets silence in them where it counts samples (wav, flac, mp3, ogg,
opus). The audio is written in the channel layout it arrives in, and in the sample format the ffmpeg
CLI gives the encoder for the format it would hold the audio in (24-bit stays 24-bit in FLAC, as s32,
and goes to lame as s32p), or ``sample_format=``.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np

from lkplug import (
    PIXEL_FORMATS,
    AudioContract,
    AudioFrame,
    LkplugError,
    MediaError,
    OutputFile,
    Sink,
    UsageError,
    VideoContract,
    VideoFrame,
)
from lkplug.convert import clip_float
from lkplug.frames import LAYOUTS, SAMPLE_FORMATS, is_integer_format, square_pixels_advice, video_shape
from lkplug.paths import TELLING, check_folder, is_pipe, refuse_folder

from . import CONTAINERS
from .video import to_av

VIDEO_BITRATES = {"libvpx": 2_000_000, "libvpx-vp9": 2_000_000}  # libvpx's own default (256k) smears
# how much media is held while a stream that has not shown up yet is waited for (memory: 10 s of
# 1080p is some 900 MB of pictures)
WAIT_SECONDS = 10.0
DRAIN_GRACE = 0.2  # seconds an encoder may still drain after a second Ctrl-C (drop_backlog)
# muxers that number samples rather than time them: a hole in the audio is filled with silence
SAMPLE_COUNTING = {"wav", "flac", "mp3", "ogg", "opus"}
# An output with no media (an input too short for one whole output sample). ffmpeg 5.1 (`ffmpeg -i
# empty.wav out.EXT`, exit 0 each time) writes wav and flac with their stream, mp4/mov/m4a with no
# stream at all (the mov muxer leaves out a track without samples), and mkv, webm, ogg, opus and mp3
# files that neither its ffprobe nor PyAV's FFmpeg 8 can open ("End of file", "Failed to read frame
# size"): its demuxers need a first cluster, data page or frame after the header. lkplug writes the
# mov family with an empty moov (the stream stays, 0 s long) and refuses the others.
EMPTY_OPTIONS = {"mp4": {"movflags": "empty_moov"}, "mov": {"movflags": "empty_moov"}}
EMPTY_OPTIONS["ipod"] = EMPTY_OPTIONS["mp4"]
NEVER_EMPTY = {"matroska": "mkv", "webm": "webm", "ogg": "ogg", "opus": "opus", "mp3": "mp3"}
# the encoders that write a picture's sample aspect ratio into their bitstream (H.264's and H.265's
# VUI, MPEG-4's and MPEG-2's aspect, JPEG's density), found by writing 32:27 into mkv through PyAV
# 18.1; for the others (libvpx, libvpx-vp9, libsvtav1, ffv1, prores_ks) Matroska's display size must
# hold it, which its muxer takes from the AVStream, a field PyAV cannot set (PyAV-Org/PyAV#1001)
SAR_IN_BITSTREAM = {"libx264", "libx265", "mpeg4", "mpeg2video", "mjpeg"}
VIDEO_TIME_BASE = Fraction(1, 90000)  # fine enough for any picture's own time (MPEG's clock)
# format=wav: the PCM codec for a sample_format=
WAV_CODECS = {"s16": "pcm_s16le", "s32": "pcm_s32le", "flt": "pcm_f32le", "dbl": "pcm_f64le", "u8": "pcm_u8"}
STANDARD_LAYOUTS = tuple(name for name in LAYOUTS if name != "downmix")
# preset= : the encoders that take one, and their names (x264's and x265's x264_preset_names)
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
PRESETS = {"libx264": (*X264_PRESETS, "placebo"), "libx265": (*X264_PRESETS, "placebo")}


def _codec(name: str, kind: str):
    import av

    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise UsageError(f"file: no {kind} encoder {name!r} in this FFmpeg (PyAV)") from None
    if codec.type != kind:
        raise UsageError(f"file: {name!r} encodes {codec.type}, not {kind}")
    return codec


# muxers that finish a file by writing back at its start (the moov atom's place): ffmpeg refuses them
# on a pipe ("muxer does not support non seekable output")
SEEKING = {"mp4", "mov", "ipod"}


class _Pipe:
    """A pipe in the place of an OutputFile: written through FFmpeg's pipe protocol (``-`` is
    ``pipe:1``, as in ffmpeg), nothing to rename or remove."""

    def __init__(self, name: str):
        self.temp = "pipe:1" if name == "-" else name

    def complete(self) -> None:
        pass

    def discard(self) -> None:
        pass


def _pixel_formats(video_codec: str) -> tuple[str, ...]:
    """The pixel formats of lkplug's that ``video_codec`` takes (yuv420p when it takes none of them)."""
    takes = [f.name for f in _codec(video_codec, "video").video_formats or ()]
    return tuple(name for name in PIXEL_FORMATS if name in takes) or ("yuv420p",)


class FileSink(Sink):
    """An instance's ``accepts`` depends on its container and codecs; the class's, which `lkplug
    inspect file` shows, is what some container's default codecs take (set below the class)."""

    emits = "a media file (container from the extension or format=)"

    def __init__(
        self,
        path: str,
        format: str = "",
        codec: str = "",
        video_codec: str = "",
        bitrate: int = 0,
        video_bitrate: int = 0,
        crf: int = -1,
        preset: str = "",
        sample_format: str = "",
    ):
        self.path = Path(path)
        self.writes = (path,)
        container = format or self.path.suffix.lstrip(".").lower()
        if is_pipe(path) and not format:  # as ffmpeg: "Unable to find a suitable output format for '-'"
            raise UsageError(
                f"file: {path} is a pipe (- is standard output): name its container with format="
                f" (file:{path},format=mkv), as ffmpeg's -f"
            )
        refuse_folder(self.path, f"out.{container if container in CONTAINERS else 'mp4'}")
        if container not in CONTAINERS:
            raise UsageError(
                f"file: cannot tell the container of {path!r}; use one of the extensions or"
                f" format= {', '.join(CONTAINERS)}"
            )
        self.muxer, default_audio, default_video = CONTAINERS[container]
        self.pipe = path if is_pipe(path) else None  # FFmpeg's pipe protocol writes it, as ffmpeg
        if self.pipe:
            self._check_pipe(format)
            self.writes = ()
        if self.muxer == "wav" and sample_format and not codec:
            default_audio = WAV_CODECS.get(sample_format, default_audio)
        self.audio_codec = codec or default_audio
        self.sample_format = sample_format
        self.video_codec = video_codec or default_video
        if video_codec and default_video is None:
            raise UsageError(f"file: {container} holds no video; use mp4, mov, mkv or webm")
        self.bitrate = bitrate
        self.video_bitrate = video_bitrate
        self.crf = crf
        self.preset = preset
        self.accepts = {"audio": self._audio_contract()}
        if self.video_codec:
            self.accepts["video"] = self._video_contract()
        self._check_container(container)
        self._check_options()
        self.expected: set[str] = set(self.accepts)
        self.fps: float | None = None
        self.container = None
        self.streams: dict = {}
        self._formats: dict = {}
        self.clipped = 0  # float samples beyond full scale, clipped on their way to an integer encoder
        self._drop_at: float | None = None  # when a second Ctrl-C came (drop_backlog)
        self._pending: list = []  # frames held until every expected kind has shown up
        self._kinds: set[str] = set()
        self._first_time = float("inf")
        self._last_time = float("-inf")
        self._last_pts = -1
        self._size = None
        self._scaler = None  # pictures of another size than the first are scaled to it
        self._notify = print
        self._rate = None  # the video stream's frame rate
        self._audio_format = None
        self._planned = None  # the audio format the engine planned this sink for (stored_sample_format)
        self._clips = True  # float samples are clipped to full scale: the encoder takes integers
        self._audio_time_base = None
        self._next_sample: int | None = None  # where the audio written so far ends

    def _check_pipe(self, format: str) -> None:
        if self.muxer in SEEKING:
            streamable = ", ".join(name for name, (muxer, *_) in CONTAINERS.items() if muxer not in SEEKING)
            raise UsageError(
                f"file: {format} cannot go into a pipe ({self.pipe}): the file is finished by writing"
                f" back at its start; use {streamable}"
            )

    def _audio_contract(self) -> AudioContract:
        codec = _codec(self.audio_codec, "audio")
        self.codec_formats = [f.name for f in codec.audio_formats or ()]
        if self.sample_format and self.codec_formats and self.sample_format not in self.codec_formats:
            raise UsageError(
                f"file: {self.audio_codec} takes sample_format= {', '.join(self.codec_formats)},"
                f" not {self.sample_format}"
            )
        s16_only = self.codec_formats and set(self.codec_formats) <= {"s16", "s16p"}
        rates = tuple(codec.audio_rates or ())
        rate = 48000 if not rates or 48000 in rates else rates[0]
        layouts = _layouts(self.audio_codec, self.codec_formats[0] if self.codec_formats else "s16", rate)
        wants_s16 = s16_only or self.sample_format in ("s16", "s16p", "u8", "u8p")
        return AudioContract(
            rates=tuple(codec.audio_rates) if codec.audio_rates else None,
            sample_formats=("s16",) if wants_s16 else None,
            layouts=None if len(layouts) in (0, len(STANDARD_LAYOUTS)) else layouts,
        )

    def _video_contract(self) -> VideoContract:
        return VideoContract(pixel_formats=_pixel_formats(self.video_codec))

    def _check_container(self, container: str) -> None:
        """The codecs fit the container, as FFmpeg's muxer answers (PyAV's add_stream asks it; a
        muxer that cannot tell, Ogg's, refuses at its header), and each option given applies to what
        is written: ffmpeg ignores a bit rate for a lossless codec and a video option without video,
        and so would this sink, silently."""
        import io

        import av

        with av.open(io.BytesIO(), "w", format=self.muxer) as probe:
            for kind, codec in (("audio", self.audio_codec), ("video", self.video_codec)):
                try:
                    if codec:
                        probe.add_stream(codec)
                except ValueError:  # "'mp3' format does not support 'aac' codec"
                    raise UsageError(
                        f"file: {container} cannot hold {codec} ({kind}); choose another codec= or container"
                    ) from None
        if self.bitrate and _codec(self.audio_codec, "audio").lossless:
            raise UsageError(f"file: bitrate= does not apply to {self.audio_codec}, which is lossless")
        for option, given in (("crf", self.crf >= 0), ("video_bitrate", self.video_bitrate > 0)):
            if given and not self.video_codec:
                raise UsageError(f"file: {option}= is for video; {container} holds no video")

    def _check_options(self) -> None:
        """Open each encoder once with each option the user gave, before anything is read or
        written: an option FFmpeg refuses is a usage error naming it, in FFmpeg's own words (which
        give the range: "out of range [-1 - 63]", "a value between 500 and 512000")."""
        if self.preset and self.video_codec in PRESETS:
            if self.preset not in PRESETS[self.video_codec]:  # x264 would print its own error
                raise UsageError(
                    f"file: preset={self.preset}: {self.video_codec} takes"
                    f" {', '.join(PRESETS[self.video_codec])}"
                )
        elif self.preset:
            takes = " or ".join(PRESETS)
            raise UsageError(f"file: preset= is for {takes}, not {self.video_codec or self.audio_codec}")
        given = [
            ("bitrate", self.bitrate, "audio", {"bit_rate": self.bitrate}, self.bitrate > 0),
            (
                "video_bitrate",
                self.video_bitrate,
                "video",
                {"bit_rate": self.video_bitrate},
                self.video_bitrate > 0,
            ),
            ("crf", self.crf, "video", {"options": {"crf": str(self.crf)}}, self.crf >= 0),
        ]
        for option, value, kind, settings, given_ in given:
            codec = self.audio_codec if kind == "audio" else self.video_codec
            if given_ and codec:
                refusal = _refusal(codec, kind, settings)
                if refusal:
                    raise UsageError(f"file: {option}={value} is refused by {codec}: {refusal}")

    # the engine's calls -----------------------------------------------------------------------

    def bind(self, context) -> None:
        self._notify = context.notify

    def start(self, formats) -> None:
        if not self.pipe:
            check_folder(self.path)  # before the source starts (a room may take hours to deliver)
        self.expected = {kind for kind in formats if kind in self.accepts} or set(self.accepts)
        self._formats = {kind: fmt for kind, fmt in formats.items() if kind in self.accepts}
        video = formats.get("video")
        self.fps = getattr(video, "fps", None)

    def end(self) -> None:
        """No frame came (an input too short for one whole output sample): write a valid file with
        the streams the run would have had, and no media in them; refused (nothing written) for the
        containers that FFmpeg cannot read back without media (``NEVER_EMPTY``)."""
        if self.container is not None or self._pending:
            return
        audio, video = self._formats.get("audio"), self._formats.get("video")
        if (audio or video) and self.muxer in NEVER_EMPTY:
            raise MediaError(
                f"{self.path}: the input gives no whole output sample, and an empty"
                f" {NEVER_EMPTY[self.muxer]} cannot be read back (FFmpeg needs media after its header);"
                " nothing written: use wav, flac, mp4, mov or m4a"
            )
        if audio is not None:
            empty = np.zeros((0, audio.channels), SAMPLE_FORMATS[audio.sample_format])
            self._pending.append(AudioFrame(empty, audio.rate, 0, audio.layout))
        if video is not None and "video" in self.accepts:
            shape = video_shape(video.pixel_format, video.width, video.height)
            self._pending.append(
                VideoFrame(
                    np.zeros(shape, np.uint8), video.pixel_format, video.width, video.height, sar=video.sar
                )
            )
        if self._pending:  # opening writes the header: no packet will come to write it
            self._open_and_drain(encode=False, options=EMPTY_OPTIONS.get(self.muxer, {}))

    def write(self, frame) -> None:
        if frame.kind not in self.accepts:
            return
        if self.container is None:
            self._pending.append(frame)
            self._kinds.add(frame.kind)
            self._first_time = min(self._first_time, frame.time)
            self._last_time = max(self._last_time, frame.time)
            if self._kinds >= self.expected or self._last_time - self._first_time > WAIT_SECONDS:
                self._open_and_drain()
            return
        self._encode(frame)

    def drop_backlog(self) -> None:
        """Close without what the encoders cannot give back within ``DRAIN_GRACE`` seconds of this
        call or of the start of draining, whichever is later: ``close`` then writes the trailer after
        the packet it is muxing (an audio encoder's few frames come back in that time; x264's 40
        pictures at 1280x720 take seconds). Called from the signal watcher's thread, while ``close``
        may run."""
        self._drop_at = time.monotonic()

    def close(self) -> None:
        try:
            if self.container is None and self._pending:
                self._open_and_drain()
            if self.container is not None:
                draining = time.monotonic()
                for stream in self.streams.values():
                    # packet by packet: x264 draining a 1280x720 backlog takes seconds, and a second
                    # Ctrl-C must still find the trailer written within one (drop_backlog)
                    for packet in stream.encode_lazy(None):
                        dropped = self._drop_at
                        if dropped is not None and time.monotonic() > max(dropped, draining) + DRAIN_GRACE:
                            break
                        self._mux(stream, [packet])
        finally:
            if self.container is not None:
                container, self.container = self.container, None
                with self._writing():
                    container.close()
                self._output.complete()

    # writing --------------------------------------------------------------------------------

    def _open_and_drain(self, encode: bool = True, options: dict | None = None) -> None:
        import av

        if not self.pipe:
            check_folder(self.path)
        pending, self._pending = self._pending, []
        kinds = {frame.kind for frame in pending}
        try:
            # in a batch: written aside, renamed when complete
            self._output = _Pipe(self.pipe) if self.pipe else OutputFile(self.path)
            self.container = av.open(str(self._output.temp), "w", format=self.muxer, options=options or {})
        except av.error.FFmpegError as exc:
            raise MediaError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            if "video" in kinds:
                self._add_video(next(f for f in pending if f.kind == "video"))
            if "audio" in kinds:
                self._add_audio(next(f for f in pending if f.kind == "audio"))
            refused = self._open_encoders()
        except av.error.FFmpegError as exc:
            refused = MediaError(f"cannot write {self.path}: {exc}")
        if refused:
            self.container.close()
            self.container = None
            self._output.discard()
            raise refused
        for frame in sorted(pending, key=lambda f: f.time) if encode else ():
            self._encode(frame)

    def _open_encoders(self) -> LkplugError | None:
        """Open the encoders and write the header now: what the options check could not know (a
        bit rate too high for this many channels) is refused with FFmpeg's reason before the file
        is made (PyAV opens the encoders first)."""
        reason = _saying(self.container.start_encoding)
        if not reason:
            return None
        for kind, stream in self.streams.items():
            context = stream.codec_context
            if context.is_open:
                continue
            given = {"audio": ("bitrate",), "video": ("video_bitrate", "crf", "preset")}[kind]
            given = [
                f"{name}={getattr(self, name)}" for name in given if getattr(self, name) not in (0, -1, "")
            ]
            what = f"{', '.join(given)} is refused by" if given else "cannot open"
            media = f"{self._audio_format}" if kind == "audio" else "video {}x{}".format(*self._size)
            return UsageError(f"file: {what} {context.name} for {media}: {reason}")
        return MediaError(f"cannot write {self.path}: {reason}")

    def _add_audio(self, first) -> None:
        import av

        stream = self.container.add_stream(self.audio_codec, rate=first.sample_rate)
        stream.layout = av.AudioLayout(first.format.layout)
        planned = self._planned
        held = planned.ffmpeg_format if planned and planned.sample_format == first.sample_format else ""
        stream.format = self._pick_sample_format(held or first.sample_format)
        self._clips = is_integer_format(stream.format.name)
        # without bitrate=, the encoder's own default, as the ffmpeg CLI leaves it (aac: 341k for
        # 5.1, libopus by its stream count, lame 128k); PyAV's add_stream sets 0 in its place
        stream.bit_rate = self.bitrate or av.CodecContext.create(self.audio_codec, "w").bit_rate or 0
        self.streams["audio"] = stream
        self._audio_format = first.format
        self._audio_time_base = Fraction(1, first.sample_rate)

    def stored_sample_format(self, fmt) -> str:
        """The sample format the encoder is given for audio arriving as ``fmt`` (FFmpeg's name): the
        one the ffmpeg CLI gives it for the format it holds that audio in (``fmt.ffmpeg_format``,
        e.g. s32 from a 24-bit file, else ``fmt.sample_format``). The engine asks while planning;
        the encoder is then opened in that format."""
        self._planned = fmt
        return self._pick_sample_format(fmt.ffmpeg_format or fmt.sample_format)

    def _pick_sample_format(self, given: str) -> str:
        if self.sample_format or not self.codec_formats:
            return self.sample_format or given
        return negotiated_sample_format(given, tuple(self.codec_formats))

    def _add_video(self, first) -> None:
        rate = Fraction(self.fps or 30).limit_denominator(1001)
        stream = self.container.add_stream(self.video_codec, rate=rate)
        stream.codec_context.time_base = VIDEO_TIME_BASE  # each picture keeps its own time (VFR)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = self.accepts["video"].pixel_formats[0]
        if first.color is not None:  # carried into the bitstream and the container, as ffmpeg does
            context = stream.codec_context
            context.colorspace, context.color_primaries, context.color_trc = first.color
        if first.sar is not None:  # into the bitstream (H.264's VUI) and MP4's pasp, as ffmpeg does
            stream.codec_context.sample_aspect_ratio = Fraction(*first.sar)
            self._tell_lost_sar(first)
        stream.thread_type = "AUTO"
        options = {}
        if self.video_bitrate or self.video_codec in VIDEO_BITRATES:
            stream.bit_rate = self.video_bitrate or VIDEO_BITRATES[self.video_codec]
        if self.crf >= 0:
            options["crf"] = str(self.crf)
        if self.preset:
            options["preset"] = self.preset
        if self.video_codec.startswith("libvpx"):
            options.setdefault("deadline", "realtime")  # libvpx's default "good" is ~10x slower
            options.setdefault("cpu-used", "8")
        stream.options = options
        self.streams["video"] = stream
        self._size = (first.width, first.height)
        self._rate = rate  # nominal, for the encoder's rate control and the container's header

    def _tell_lost_sar(self, first) -> None:
        """Told once: non-square pixels that this file cannot say are not square (VP8 in WebM)."""
        if self.muxer not in ("matroska", "webm") or self.video_codec in SAR_IN_BITSTREAM:
            return
        advice = square_pixels_advice(first)
        if advice:
            container = self.path.suffix[1:] or self.muxer
            self._notify(
                f"warning: {self.path}: {self.video_codec} in {container} keeps no pixel aspect ratio"
                f" here (PyAV cannot set Matroska's display size): {advice}, or write mp4"
            )

    def _encode(self, frame) -> None:
        import av

        stream = self.streams.get(frame.kind)
        if stream is None:
            raise MediaError(
                f"{self.path}: the {frame.kind} starts {frame.time - self._first_time:.1f} s after the other"
                " streams;"
                f" the file sink waits at most {WAIT_SECONDS:g} s for a late stream"
            )
        if frame.kind == "audio":
            if frame.format != self._audio_format:
                raise MediaError(
                    f"{self.path}: audio changed mid-stream at {frame.time:.2f} s ({self._audio_format} ->"
                    f" {frame.format}); an encoder takes one format"
                )
            data = frame.data
            # into an integer encoder only (counted: the engine reports it, naming the sink); a
            # float one (aac, libopus, lame's fltp) takes samples beyond full scale, as in ffmpeg
            if data.dtype == np.float32 and self._clips:
                data, clipped = clip_float(data)
                self.clipped += clipped
            timestamp = frame.timestamp
            if self.muxer in SAMPLE_COUNTING and self._next_sample is not None:
                hole = timestamp - self._next_sample
                if hole > 0:  # the container numbers samples: the hole becomes silence
                    data = np.concatenate([np.zeros((hole, data.shape[1]), data.dtype), data])
                    timestamp = self._next_sample
            self._next_sample = max(self._next_sample or 0, timestamp + len(data))
            packed = np.ascontiguousarray(data).reshape(1, -1)
            picture = av.AudioFrame.from_ndarray(packed, format=frame.sample_format, layout=stream.layout)
            picture.sample_rate = frame.sample_rate
            picture.pts = timestamp
            picture.time_base = self._audio_time_base
        else:
            pts = round(frame.time / VIDEO_TIME_BASE)
            if pts <= self._last_pts:
                return  # two pictures at one time: keep the first, like -vsync vfr
            self._last_pts = pts
            picture = to_av(frame)
            if (frame.width, frame.height) != self._size:
                picture = self._rescale(picture, frame.time)
            picture.pts = pts
            picture.time_base = VIDEO_TIME_BASE
        self._mux(stream, stream.encode(picture))

    def _rescale(self, picture, when: float):
        """A picture whose size changed mid-stream (a live track adapting to bandwidth), scaled to the
        stream's first size as the ffmpeg CLI does (its auto-inserted scaler: bicubic); told once."""
        from av.video.reformatter import Interpolation, VideoReformatter

        width, height = self._size
        if self._scaler is None:
            self._scaler = VideoReformatter()
            self._notify(
                f"{self.path}: video size changed mid-stream at {when:.2f} s ({width}x{height} -> "
                f"{picture.width}x{picture.height}); scaling to {width}x{height}"
            )
        return self._scaler.reformat(
            picture,
            width=width,
            height=height,
            format=picture.format.name,
            interpolation=Interpolation.BICUBIC,
        )

    def _mux(self, stream, packets: list) -> None:
        """Write ``packets``, which ``stream``'s encoder gave, into ``stream``: the one way a packet
        reaches the container. Each is bound to ``stream`` here because PyAV's ``encode_lazy`` (a
        CodecContext method that the stream passes through) leaves a packet's stream index at 0:
        the audio encoder's last packets, drained at close, went into the video stream."""
        for packet in packets:
            packet.stream = stream
        if packets:
            with self._writing():
                self.container.mux(packets)

    @contextmanager
    def _writing(self):
        """A write that fails (disk full, quota) as one line naming the output, not its temporary."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in TELLING:  # FFmpeg's EINVAL for a bad packet is the muxer's, not the disk's
                raise
            raise MediaError(f"cannot write {self.path}: {exc.strerror}") from None


@functools.lru_cache(maxsize=64)
def negotiated_sample_format(given: str, takes: tuple[str, ...]) -> str:
    """The sample format of ``takes`` (an encoder's list) that libavfilter's negotiation gives the
    encoder for audio in ``given``, as in the ffmpeg CLI: asked of FFmpeg itself, by a filter graph
    (abuffer in ``given`` -> aformat with ``takes`` -> abuffersink) that one frame goes through. The
    least lost wins: 24-bit (s32) into lame is s32p, dbl into it fltp, u8 s16p (ffmpeg 5.1's
    ``-loglevel debug``: "picking s32p out of 3 ref:s32"; the same for lame, flac, alac, wavpack,
    libopus and aac from u8, s16, s32, flt and dbl)."""
    import av
    from av.filter import Graph

    graph = Graph()
    source = graph.add_abuffer(format=given, sample_rate=48000, layout="mono")
    pick = graph.add("aformat", "sample_fmts=" + "|".join(takes))
    sink = graph.add("abuffersink")
    source.link_to(pick)
    pick.link_to(sink)
    graph.configure()
    frame = av.AudioFrame(format=given, layout="mono", samples=1)
    frame.sample_rate = 48000
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    graph.push(frame)
    return graph.pull().format.name


def _saying(call) -> str:
    """Run ``call`` (which opens codecs); "" when it succeeds, else why not in FFmpeg's words (its
    warnings and errors, which give ranges: "out of range [-1 - 63]", "between 500 and 256000")."""
    import av
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(local=False) as logs:
            call()
        return ""
    except av.error.FFmpegError as exc:
        said = [text.strip().rstrip(".") for level, _name, text in logs if level <= av.logging.WARNING]
        last = exc.log[2].strip().rstrip(".") if exc.log else ""  # when another capture took the log
        return "; ".join(dict.fromkeys(said)) or last or exc.strerror
    finally:
        av.logging.set_level(previous)


_DEFAULT_VIDEO_CODECS = dict.fromkeys(video for *_, video in CONTAINERS.values() if video)
FileSink.accepts = {
    "audio": AudioContract(),
    "video": VideoContract(
        pixel_formats=tuple(
            dict.fromkeys(name for codec in _DEFAULT_VIDEO_CODECS for name in _pixel_formats(codec))
        )
    ),
}


def _refusal(codec: str, kind: str, settings: dict) -> str:
    """Why ``codec`` will not open with ``settings`` (``bit_rate``, ``options``), in FFmpeg's words
    ("" when it opens): tried on a small picture, or on mono and on stereo audio (refused only when
    both are: a bit rate's bounds depend on the channel count)."""
    import av

    refusal = ""
    for layout in ("mono", "stereo") if kind == "audio" else ("",):
        context = av.CodecContext.create(codec, "w")
        if kind == "video":
            context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
            context.time_base, context.framerate = Fraction(1, 30), 30
        else:
            found = av.Codec(codec, "w")
            rates = found.audio_rates
            context.sample_rate = 48000 if not rates or 48000 in rates else rates[0]
            context.layout = layout
            context.format = found.audio_formats[0].name if found.audio_formats else "s16"
        context.bit_rate = settings.get("bit_rate", 0)
        context.options = settings.get("options", {})
        said = _saying(context.open)
        if not said:
            return ""
        refusal = refusal or said
    return refusal


def _layouts(codec: str, sample_format: str, rate: int) -> tuple[str, ...]:
    """FFmpeg's standard layouts that ``codec`` opens with (libopus: mono, stereo, 3.0, quad, 5.0,
    5.1, 6.1, 7.1; libmp3lame: mono, stereo), found by opening it: PyAV does not list them."""
    import av

    taken = []
    for layout in STANDARD_LAYOUTS:
        context = av.CodecContext.create(codec, "w")
        context.layout, context.sample_rate, context.format = layout, rate, sample_format
        try:
            context.open()
        except (av.error.FFmpegError, ValueError):
            continue
        taken.append(layout)
    return tuple(taken)
