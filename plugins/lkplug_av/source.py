"""The ``file`` source: demux and decode packet by packet, so a damaged packet is skipped (and
counted) the way the ffmpeg CLI does instead of ending the file; decoded length, not the header,
is the truth about how long a file is.

Audio comes out in the file's own rate and layout, gathered into blocks (0.5 s; 0.1 s when paced
or beside video); video as one
frame per picture in one of lkplug's pixel formats. With both, the frames keep the file's interleaving
and share one clock (seconds from the start of the file, or from ``start=``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from lkplug import AudioFormat, AudioFrame, MediaError, Source, UsageError, VideoFormat, VideoFrame
from lkplug.frames import PIXEL_FORMATS

from .wavcheck import wav_reader

# decoded audio is gathered into blocks: fewer, larger frames downstream cost less per second of
# media; a run paced to real time (a file played into a room) gets short ones, for an even flow,
# and so does audio beside video
BLOCK_SECONDS = 0.5
PACED_BLOCK_SECONDS = 0.1
_S16 = ("s16", "s16p")
# sample formats copied straight from the decoder's planes: name -> (dtype, planar)
_DIRECT = {
    "s16": (np.int16, False),
    "s16p": (np.int16, True),
    "flt": (np.float32, False),
    "fltp": (np.float32, True),
}
_KIND = {"a": "audio", "v": "video"}


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


def to_samples(frame) -> np.ndarray:
    """A decoded PyAV audio frame as (samples, channels) int16 or float32."""
    array = frame.to_ndarray()
    name = frame.format.name
    channels = len(frame.layout.channels)
    data = array.T if frame.format.is_planar else array.reshape(-1, channels)
    if name in _S16 or name in ("flt", "fltp"):
        return data
    if name in ("s32", "s32p"):
        return data.astype(np.float32) * np.float32(1 / 2**31)
    if name in ("u8", "u8p"):
        return (data.astype(np.float32) - 128) * np.float32(1 / 128)
    return data.astype(np.float32)  # dbl, dblp, s64


def pixel_format_for(fmt, width: int, height: int) -> str:
    """The lkplug pixel format a decoder's PyAV ``VideoFormat`` is delivered in (converted when it
    differs): its own when lkplug has it, else the nearest of yuv420p, rgb24, rgba and gray."""
    name = "yuv420p" if fmt.name == "yuvj420p" else fmt.name  # same planes, full range
    odd = width % 2 or height % 2  # 4:2:0 needs even sizes; keep every pixel as RGB instead
    if name in PIXEL_FORMATS and not (odd and name in ("yuv420p", "nv12")):
        return name
    if len(fmt.components) <= 2 and not fmt.is_rgb:
        return "gray"
    if any(c.is_alpha for c in fmt.components):
        return "rgba"
    return "rgb24" if fmt.is_rgb or odd else "yuv420p"


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
        video: bool = False,
        start: float = 0.0,
        duration: float = 0.0,
        loop: int = 1,
    ):
        self.path = path
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
        self.formats: dict | None = None
        self.skipped = 0
        self.errors: list[str] = []  # FFmpeg's error messages while decoding
        self.warnings: list[str] = []

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
            length = self.duration
            if length is not None:
                length = max(0.0, length - self.start)
                if self.limit:
                    length = min(length, self.limit)
                self.duration = length * self.loop if self.loop else None
        return self.formats

    def _open(self) -> dict:
        self.container = open_container(self.path)
        self.streams = self._select(self.container)
        formats = {}
        for kind, stream in self.streams.items():
            stream.thread_type = "AUTO"  # frame threads where the codec has them (FLAC, H.264)
            ctx = stream.codec_context
            if kind == "audio":
                fmt = "s16" if ctx.format is not None and ctx.format.name in _S16 else "flt"
                ok = ctx.sample_rate and ctx.channels
                formats[kind] = AudioFormat(ctx.sample_rate, ctx.channels, fmt) if ok else None
            else:
                fps = float(stream.average_rate or stream.guessed_rate or 0) or None
                pixel = pixel_format_for(ctx.format, ctx.width, ctx.height) if ctx.format else "yuv420p"
                ok = ctx.width and ctx.height
                formats[kind] = VideoFormat(ctx.width, ctx.height, pixel, fps) if ok else None
        self.duration = self._header_duration()
        return formats

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
        want_video = self.video or (kinds is not None and "video" in kinds)
        picked = {}
        if want_audio and audio:
            picked["audio"] = audio[0]
        if want_video and video:
            picked["video"] = video[0]
        if not picked:
            has = " (it has video: add video=true or a video stage)" if video else ""
            wanted = "audio" if want_audio else "video"
            raise MediaError(f"{self.path}: no {wanted} stream{has}")
        return picked

    def _probe_soundfile(self) -> dict | None:
        import soundfile

        try:
            info = soundfile.info(self.path)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            with open(self.path, "rb") as file:
                if file.read(4) != b"RIFX":
                    return None  # FFmpeg may still read it
            raise MediaError(f"cannot read {self.path}: {exc}") from None
        self.duration = info.frames / info.samplerate if info.samplerate else None
        fmt = "s16" if info.subtype in ("PCM_16", "PCM_S8", "PCM_U8") else "flt"
        return {"audio": AudioFormat(info.samplerate, info.channels, fmt)}

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
        clock = _Clock(self.limit, block, set(self.streams) or {"audio"})
        plays = 0
        while not self.loop or plays < self.loop:
            if plays:
                self._reopen()
            produced = 0
            decoded = self._read_soundfile() if self.reader else self._decoded()
            for frame in clock.frames(decoded, self.start, len(self.streams) > 1):
                produced += 1
                yield frame
                if produced % 8 == 0:
                    await asyncio.sleep(0)
                if clock.done:
                    break
            decoded.close()  # ends FFmpeg's log capture now, not whenever it is collected
            for frame in clock.end_pass():
                produced += 1
                yield frame
            plays += 1
            if clock.done or not produced:
                break
        if self.skipped or self.errors:
            self.warnings.append(self._damage_report())
        if not clock.emitted:
            what = " or ".join(self.streams) if self.streams else "audio"
            raise MediaError(f"{self.path}: no {what} could be decoded")

    def _damage_report(self) -> str:
        parts = [f"skipped {self.skipped} packet(s) that failed to decode"] if self.skipped else []
        if self.errors:
            first = self.errors[0].rstrip(".")
            parts.append(f"FFmpeg reported {len(self.errors)} error(s), the first: {first}")
        return f"{self.path}: damaged input, decoded past it: " + "; ".join(parts)

    def _reopen(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = open_container(self.path)
            self.streams = self._select(self.container)
            for stream in self.streams.values():
                stream.thread_type = "AUTO"

    def _decoded(self):
        """(kind, seconds from the file's start, PyAV frame) for one pass over the file. FFmpeg's own
        error messages are captured (from every thread: decoders run frame threads), not printed:
        the run ends with one warning line instead."""
        import av.logging

        previous = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        capture = av.logging.Capture(local=False)
        try:
            with capture as logs:
                yield from self._demux_and_decode()
        finally:
            av.logging.set_level(previous)
            self.errors += [text.strip() for _level, _name, text in logs]

    def _demux_and_decode(self):
        """Packet by packet: a packet that fails to decode is counted and skipped."""
        import av

        container = self.container
        origin = (container.start_time or 0) / 1_000_000
        if self.start:
            self._seek(origin + self.start)
        kind_of = {stream.index: kind for kind, stream in self.streams.items()}
        demux = container.demux(*self.streams.values())
        while True:
            try:
                packet = next(demux)
            except (StopIteration, av.error.EOFError):
                return
            except av.error.FFmpegError as exc:
                self.skipped += 1  # a broken container structure: nothing more can be read
                self.errors.append(str(exc))
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                self.skipped += 1
                continue
            kind = kind_of[packet.stream.index]
            for frame in decoded:
                seconds = frame.time
                yield kind, (None if seconds is None else seconds - origin), frame

    def _seek(self, seconds: float) -> None:
        import av

        try:
            self.container.seek(int(seconds * 1_000_000), backward=True, any_frame=False)
        except av.error.FFmpegError:
            pass  # not seekable: decode from the start; frames before start= are dropped anyway

    def _read_soundfile(self):
        import soundfile

        with soundfile.SoundFile(self.path) as file:
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


class _Samples:
    """Already-converted samples, shaped like a decoded PyAV frame for ``_Clock``."""

    def __init__(self, data: np.ndarray, rate: int):
        self.data = data
        self.sample_rate = rate


class _Clock:
    """Turns decoded frames into lkplug frames on one timeline: trims what lies before ``start=``,
    gathers audio into blocks, cuts at ``duration=``, and carries time on across loops."""

    def __init__(self, limit: float | None, block_seconds: float, kinds: set[str]):
        self.limit = limit
        self.kinds = kinds
        self.finished: set[str] = set()  # kinds that reached duration=
        self.block_seconds = block_seconds
        self.start = 0.0
        self.offset = 0.0  # seconds of the earlier passes (loop=)
        self.position: int | None = None  # next audio sample number
        self.rate = 0
        self.fifo = None  # FFmpeg's AVAudioFifo, gathering the audio block
        self.fifo_key: tuple | None = None  # rate, sample format, channels of what it holds
        self.video_end = 0.0
        self.emitted = 0

    @property
    def done(self) -> bool:
        """Every kind has reached duration= (one kind may get there first: files interleave)."""
        return self.finished >= self.kinds

    def frames(self, decoded, start: float, several: bool):
        self.start = start
        for kind, seconds, frame in decoded:
            if seconds is not None:
                seconds -= start
            if kind == "audio":
                yield from self._audio(frame, seconds, several)
            else:
                yield from self._video(frame, seconds)
            if self.done:
                return

    def _audio(self, frame, seconds: float | None, several: bool) -> list:
        """Gather decoded frames in FFmpeg's own FIFO and make one array per block: per decoded
        frame (some 50 per second of audio) Python does almost nothing."""
        rate = frame.sample_rate
        if isinstance(frame, _Samples):  # already a block (libsndfile reads whole blocks)
            return self._block(frame.data, rate, seconds, several)
        if self.start and seconds is not None and seconds < 0:  # decoded from the keyframe before start=
            cut = round(-seconds * rate)
            data = to_samples(frame)
            return self._block(data[cut:], rate, 0.0, several) if cut < len(data) else []
        key = (rate, frame.format.name, frame.layout.nb_channels)
        out = self._emit_fifo() if self.fifo is not None and key != self.fifo_key else []
        self._start_position(rate, seconds, several)
        if self.fifo is None:
            import av

            self.fifo, self.fifo_key = av.AudioFifo(), key
        frame.pts = None  # the FIFO checks continuity of timestamps; the clock here counts samples
        self.fifo.write(frame)
        if self.fifo.samples >= rate * self.block_seconds:
            out += self._emit_fifo()
        return out

    def _start_position(self, rate: int, seconds: float | None, several: bool) -> None:
        if self.position is None:
            first = max(0.0, seconds) if several and seconds is not None else 0.0
            self.position = round((self.offset + first) * rate)
        elif rate != self.rate and self.rate:
            self.position = round(self.position * rate / self.rate)
        self.rate = rate

    def _block(self, data: np.ndarray, rate: int, seconds: float | None, several: bool) -> list:
        out = self._emit_fifo()
        self._start_position(rate, seconds, several)
        return out + self._emit(data)

    def _emit_fifo(self) -> list:
        fifo, self.fifo = self.fifo, None
        block = fifo.read() if fifo is not None else None
        if block is None:
            return []
        samples = block.samples
        direct = _DIRECT.get(block.format.name)
        if direct is None:
            data = to_samples(block)
        elif direct[1]:  # planar: one plane per channel, interleaved here in one pass per channel
            planes = block.planes
            data = np.empty((samples, len(planes)), direct[0])
            for channel, plane in enumerate(planes):
                data[:, channel] = np.frombuffer(plane, direct[0], count=samples)
        else:
            channels = block.layout.nb_channels
            data = np.frombuffer(block.planes[0], direct[0], count=samples * channels)
            data = data.reshape(samples, channels).copy()
        return self._emit(data)

    def _emit(self, data: np.ndarray) -> list:
        frame = AudioFrame(data, self.rate, self.position)
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
        if pixel != frame.format.name:
            frame = frame.reformat(format=pixel)
        self.video_end = max(self.video_end, when + length)
        self.emitted += 1
        yield VideoFrame(frame.to_ndarray(), pixel, width, height, when, length)

    def end_pass(self):
        """After a pass: the last audio block, and the clock moved past everything this pass gave."""
        yield from self._emit_fifo()
        audio_end = self.position / self.rate if self.position is not None and self.rate else 0.0
        self.offset = max(audio_end, self.video_end, self.offset)
        if self.position is not None:
            self.position = round(self.offset * self.rate)
