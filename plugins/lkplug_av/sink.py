"""The ``file`` sink: encode and mux audio and video with FFmpeg (PyAV), streamed to disk.

The container is created when the first frames arrive (a run that fails before any media leaves no
file behind) and only once every expected kind has shown its first frame, since all streams must
exist before the header is written. libavformat's interleaved writer puts packets in timestamp
order. ``close`` drains the encoders and writes the trailer on every exit path, Ctrl-C included.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from lkplug import PIXEL_FORMATS, AudioContract, MediaError, OutputFile, Sink, UsageError, VideoContract

from .video import to_av

# extension or format= -> (FFmpeg muxer, default audio codec, default video codec or None: audio only)
CONTAINERS = {
    "mp4": ("mp4", "aac", "libx264"),
    "mov": ("mov", "aac", "libx264"),
    "m4a": ("ipod", "aac", None),
    "mkv": ("matroska", "libopus", "libx264"),
    "webm": ("webm", "libopus", "libvpx"),
    "ogg": ("ogg", "libopus", None),
    "opus": ("opus", "libopus", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "wav": ("wav", "pcm_s16le", None),
}
AUDIO_BITRATES = {"aac": 128_000, "libopus": 96_000, "opus": 96_000, "libmp3lame": 192_000, "vorbis": 128_000}
VIDEO_BITRATES = {"libvpx": 2_000_000, "libvpx-vp9": 2_000_000}  # libvpx's own default (256k) smears
MAX_CHANNELS = {"libmp3lame": 2}
WAIT_SECONDS = 1.0  # how much media may arrive before a stream that has not shown up is given up on


def _codec(name: str, kind: str):
    import av

    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise UsageError(f"file: no {kind} encoder {name!r} in this FFmpeg (PyAV)") from None
    if codec.type != kind:
        raise UsageError(f"file: {name!r} encodes {codec.type}, not {kind}")
    return codec


class FileSink(Sink):
    emits = "a media file (container from the extension or format=)"
    accepts = {"audio": AudioContract(), "video": VideoContract(pixel_formats=("yuv420p",))}

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
    ):
        self.path = Path(path)
        container = format or self.path.suffix.lstrip(".").lower()
        if container not in CONTAINERS:
            raise UsageError(
                f"file: cannot tell the container of {path!r}; use one of the extensions or"
                f" format= {', '.join(CONTAINERS)}"
            )
        self.muxer, default_audio, default_video = CONTAINERS[container]
        self.audio_codec = codec or default_audio
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
        self.expected: set[str] = set(self.accepts)
        self.fps: float | None = None
        self.container = None
        self.streams: dict = {}
        self._pending: list = []
        self._last_pts = -1
        self._size = None
        self._rate = None  # the video stream's frame rate
        self._audio_format = None
        self._audio_time_base = None

    def _audio_contract(self) -> AudioContract:
        codec = _codec(self.audio_codec, "audio")
        formats = {f.name for f in codec.audio_formats or ()}
        s16_only = formats and formats <= {"s16", "s16p"}
        channels = MAX_CHANNELS.get(self.audio_codec)
        return AudioContract(
            rates=tuple(codec.audio_rates) if codec.audio_rates else None,
            channels=tuple(range(1, channels + 1)) if channels else None,
            sample_formats=("s16",) if s16_only else None,
        )

    def _video_contract(self) -> VideoContract:
        codec = _codec(self.video_codec, "video")
        takes = [f.name for f in codec.video_formats or ()]
        ours = [name for name in PIXEL_FORMATS if name in takes] or ["yuv420p"]
        return VideoContract(pixel_formats=tuple(ours))

    # the engine's calls -----------------------------------------------------------------------

    def start(self, formats) -> None:
        self.expected = {kind for kind in formats if kind in self.accepts} or set(self.accepts)
        video = formats.get("video")
        self.fps = getattr(video, "fps", None)

    def write(self, frame) -> None:
        if frame.kind not in self.accepts:
            return
        if self.container is None:
            self._pending.append(frame)
            kinds = {f.kind for f in self._pending}
            span = self._pending[-1].time - self._pending[0].time
            if kinds >= self.expected or span > WAIT_SECONDS:
                self._open_and_drain()
            return
        self._encode(frame)

    def close(self) -> None:
        try:
            if self.container is None and self._pending:
                self._open_and_drain()
            if self.container is not None:
                for stream in self.streams.values():
                    self._mux(stream.encode(None))
        finally:
            if self.container is not None:
                self.container.close()
                self.container = None
                self._output.complete()

    # writing --------------------------------------------------------------------------------

    def _open_and_drain(self) -> None:
        import av

        if not self.path.parent.exists():
            raise MediaError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        pending, self._pending = self._pending, []
        kinds = {frame.kind for frame in pending}
        try:
            self._output = OutputFile(self.path)  # written aside, renamed to path when closed
            self.container = av.open(str(self._output.temp), "w", format=self.muxer)
        except av.error.FFmpegError as exc:
            raise MediaError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            if "video" in kinds:
                self._add_video(next(f for f in pending if f.kind == "video"))
            if "audio" in kinds:
                self._add_audio(next(f for f in pending if f.kind == "audio"))
        except av.error.FFmpegError as exc:
            self.container.close()
            self.container = None
            self._output.discard()
            raise MediaError(f"cannot write {self.path}: {exc}") from None
        for frame in sorted(pending, key=lambda f: f.time):
            self._encode(frame)

    def _add_audio(self, first) -> None:
        import av

        stream = self.container.add_stream(self.audio_codec, rate=first.sample_rate)
        stream.layout = av.AudioLayout(f"{first.channels}c")
        if self.bitrate or self.audio_codec in AUDIO_BITRATES:
            stream.bit_rate = self.bitrate or AUDIO_BITRATES[self.audio_codec]
        self.streams["audio"] = stream
        self._audio_format = first.format
        self._audio_time_base = Fraction(1, first.sample_rate)

    def _add_video(self, first) -> None:
        rate = Fraction(self.fps or 30).limit_denominator(1001)
        stream = self.container.add_stream(self.video_codec, rate=rate)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = self.accepts["video"].pixel_formats[0]
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
        self._rate = rate

    def _encode(self, frame) -> None:
        import av

        stream = self.streams.get(frame.kind)
        if stream is None:
            return  # this kind showed up too late to get a stream
        if frame.kind == "audio":
            if frame.format != self._audio_format:
                raise MediaError(
                    f"{self.path}: audio format changed mid-stream ({self._audio_format} -> {frame.format})"
                )
            data = frame.data
            if data.dtype == np.float32:
                data = np.clip(data, -1.0, 1.0)
            packed = np.ascontiguousarray(data).reshape(1, -1)
            picture = av.AudioFrame.from_ndarray(packed, format=frame.sample_format, layout=stream.layout)
            picture.sample_rate = frame.sample_rate
            picture.pts = frame.timestamp
            picture.time_base = self._audio_time_base
        else:
            if (frame.width, frame.height) != self._size:
                raise MediaError(
                    f"{self.path}: video size changed mid-stream ({self._size[0]}x{self._size[1]} ->"
                    f" {frame.width}x{frame.height}); put scale: before the sink"
                )
            pts = round(frame.time * self._rate)
            if pts <= self._last_pts:
                return  # two pictures on one tick of the output rate: keep the first, like -vsync vfr
            self._last_pts = pts
            picture = to_av(frame)
            picture.pts = pts
            picture.time_base = 1 / self._rate
        self._mux(stream.encode(picture))

    def _mux(self, packets) -> None:
        if packets:
            self.container.mux(packets)
