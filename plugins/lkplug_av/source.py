"""The ``file`` source: demux and decode packet by packet, so a damaged packet is skipped (and
counted) the way the ffmpeg CLI does instead of ending the file; decoded length, not the header,
is the truth about how long a file is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from lkplug import AudioFormat, AudioFrame, MediaError, Source, UsageError

BLOCK_SECONDS = 0.1  # decoded frames are gathered into blocks: fewer, larger frames downstream

# PyAV sample format -> (numpy conversion to our sample format)
_S16 = ("s16", "s16p")


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
    if name in _S16:
        return data
    if name in ("flt", "fltp"):
        return data
    if name in ("s32", "s32p"):
        return data.astype(np.float32) * np.float32(1 / 2**31)
    if name in ("u8", "u8p"):
        return (data.astype(np.float32) - 128) * np.float32(1 / 128)
    return data.astype(np.float32)  # dbl, dblp, s64


class FileSource(Source):
    def __init__(self, path: str, stream: str = "a:0"):
        self.path = path
        kind, _, index = stream.partition(":")
        if kind != "a" or not index.isdigit():
            raise UsageError(f"file: stream={stream!r}: expected a:N (the N-th audio stream)")
        self.stream_index = int(index)
        self.container = None
        self.stream = None
        self.skipped = 0
        self.warnings: list[str] = []

    def probe(self) -> dict:
        if self.container is None:
            self.container = open_container(self.path)
            audio = self.container.streams.audio
            if len(audio) <= self.stream_index:
                self.container.close()
                self.container = None
                found = f"only {len(audio)}" if audio else "no"
                raise MediaError(f"{self.path}: has {found} audio stream(s), wanted a:{self.stream_index}")
            self.stream = audio[self.stream_index]
            self.duration = self._header_duration()
        ctx = self.stream.codec_context
        sample_format = "s16" if ctx.format is not None and ctx.format.name in _S16 else "flt"
        if not ctx.sample_rate or not ctx.channels:
            return {"audio": None}
        return {"audio": AudioFormat(ctx.sample_rate, ctx.channels, sample_format)}

    def _header_duration(self) -> float | None:
        """Only an estimate for progress: some containers' headers are wrong by orders of magnitude."""
        stream = self.stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if self.container.duration:
            return self.container.duration / 1_000_000
        return None

    def _decoded(self):
        """Yield decoded PyAV frames, skipping packets that fail to decode."""
        import av

        demux = self.container.demux(self.stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                self.skipped += 1  # a broken container structure: nothing more can be read
                return
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                self.skipped += 1

    async def frames(self):
        self.probe()
        position = 0
        block: list[np.ndarray] = []
        held = 0
        rate = 0
        for decoded in self._decoded():
            samples = to_samples(decoded)
            if block and (
                decoded.sample_rate != rate
                or samples.shape[1] != block[0].shape[1]
                or samples.dtype != block[0].dtype
            ):
                yield self._frame(block, rate, position)
                position += held
                block, held = [], 0
            rate = decoded.sample_rate
            block.append(samples)
            held += len(samples)
            if held >= rate * BLOCK_SECONDS:
                yield self._frame(block, rate, position)
                position += held
                block, held = [], 0
                await asyncio.sleep(0)
        if block:
            yield self._frame(block, rate, position)
            position += held
        if self.skipped:
            self.warnings.append(f"{self.path}: skipped {self.skipped} damaged packet(s)")
        if position == 0:
            raise MediaError(f"{self.path}: no audio could be decoded")

    @staticmethod
    def _frame(block: list[np.ndarray], rate: int, position: int) -> AudioFrame:
        data = block[0] if len(block) == 1 else np.concatenate(block)
        return AudioFrame(data, rate, position)

    async def aclose(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
