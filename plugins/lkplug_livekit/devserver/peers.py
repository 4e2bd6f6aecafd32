"""Participants for tests and demos, made with the real SDK: join, publish a sine or colour bars,
receive what others publish as numpy arrays."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from livekit import rtc

from .. import video_encoding

RATE = 48000
FRAME = RATE // 100  # 10 ms, what WebRTC works in
WIDTH, HEIGHT = 320, 240
# colour bars of the camera pattern, left to right (RGB)
BARS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))


def colour_bars(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGBA image of four vertical bars (``BARS``)."""
    image = np.zeros((height, width, 4), np.uint8)
    image[..., 3] = 255
    for index, colour in enumerate(BARS):
        image[:, index * width // len(BARS) : (index + 1) * width // len(BARS), :3] = colour
    return image


def bar_colours(image: np.ndarray) -> list[tuple[int, int, int]]:
    """The mean RGB of the middle of each bar, away from edges that the codec blurs."""
    height, width = image.shape[:2]
    step = width // len(BARS)
    return [
        tuple(
            int(v)
            for v in image[height // 4 : -height // 4, i * step + step // 4 : (i + 1) * step - step // 4, :3]
            .reshape(-1, 3)
            .mean(axis=0)
        )
        for i in range(len(BARS))
    ]


class Peer:
    """One participant. ``await Peer.join(url, token)``; publishers run until ``close()``."""

    def __init__(self, room: rtc.Room):
        self.room = room
        self.tasks: list[asyncio.Task] = []
        self.sources: list = []

    @classmethod
    async def join(cls, url: str, token: str, auto_subscribe: bool = True, timeout: float = 20) -> Peer:
        room = rtc.Room()
        await asyncio.wait_for(
            room.connect(url, token, rtc.RoomOptions(auto_subscribe=auto_subscribe)), timeout
        )
        return cls(room)

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity

    async def publish_sine(
        self,
        freq: float = 440.0,
        name: str = "microphone",
        source: int = rtc.TrackSource.SOURCE_MICROPHONE,
        dbfs: float = -6.0,
        impulses: bool = False,
        queue_ms: int = 100,
    ) -> rtc.LocalTrackPublication:
        """Publish a sine of ``freq`` (whole Hz) at ``dbfs`` (peak) in real time; with ``impulses``, a
        click every second instead (for latency measurements: its first sample is at a whole second
        since publishing).
        ``queue_ms``: the SDK's capture queue, which the feeder keeps full. It is also how long this
        process may stall before the SDK sends silence in its place (it sends 10 ms of zeros whenever
        the queue is empty): a test that looks for gaps on a loaded machine wants more than 100 ms,
        a latency measurement wants little."""
        if not float(freq).is_integer():
            raise ValueError(f"a sine of {freq} Hz: whole Hz only (one second is sent round and round)")
        audio = rtc.AudioSource(RATE, 1, queue_size_ms=queue_ms)
        track = rtc.LocalAudioTrack.create_audio_track(name, audio)
        publication = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=source)
        )
        amplitude = 10 ** (dbfs / 20) * 32767
        # one second of the signal, made once and sent round and round (whole cycles of a whole-Hz
        # tone): no arithmetic per frame, and a long queue kept full in 100 ms frames, a tenth of the
        # calls (eight publishers took 49 % of a core in a test process, 28 % so; load 10, measured)
        n = np.arange(RATE)
        one_second = (
            np.where(n < 48, amplitude, 0.0) if impulses else amplitude * np.sin(2 * np.pi * freq * n / RATE)
        )
        samples = one_second.astype(np.int16)
        size = FRAME * 10 if queue_ms >= 500 else FRAME  # a short queue (latency) takes 10 ms at a time

        async def feed():
            position = 0
            while True:
                chunk = np.take(samples, np.arange(position, position + size), mode="wrap")
                await audio.capture_frame(
                    rtc.AudioFrame(chunk.tobytes(), RATE, 1, size)
                )  # paced by the queue
                position = (position + size) % RATE

        self.sources.append(audio)
        self.tasks.append(asyncio.create_task(feed()))
        return publication

    async def publish_bars(
        self, name: str = "camera", fps: int = 15, width: int = WIDTH, height: int = HEIGHT
    ) -> rtc.LocalTrackPublication:
        video = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track(name, video)
        # one layer: the dev server (aiortc) cannot receive simulcast. The size is kept (the frame
        # rate gives way instead): the server forwards what is sent, and libwebrtc on a loaded machine
        # would otherwise send 1280x720 as 640x360 (its CPU adaptation)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_codec=rtc.VideoCodec.VP8,
            degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION,
            video_encoding=video_encoding(width, height, fps),  # at its rate, as lkplug's track sink
        )
        publication = await self.room.local_participant.publish_track(track, options)
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, colour_bars(width, height).tobytes())

        async def feed():
            loop = asyncio.get_running_loop()
            start = loop.time()
            for index in range(10**9):
                video.capture_frame(frame, timestamp_us=int(index * 1e6 / fps))
                await asyncio.sleep(max(0.0, start + (index + 1) / fps - loop.time()))

        self.sources.append(video)
        self.tasks.append(asyncio.create_task(feed()))
        return publication

    async def remote_track(self, identity: str, kind: str = "audio", timeout: float = 20) -> rtc.RemoteTrack:
        """Wait until a track of ``kind`` from ``identity`` is subscribed; return it."""
        wanted = rtc.TrackKind.KIND_AUDIO if kind == "audio" else rtc.TrackKind.KIND_VIDEO

        async def find():
            while True:
                participant = self.room.remote_participants.get(identity)
                for publication in participant.track_publications.values() if participant else ():
                    if publication.kind == wanted and publication.track is not None:
                        return publication.track
                    if publication.kind == wanted and not publication.subscribed:
                        publication.set_subscribed(True)
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(find(), timeout)

    async def receive_audio(
        self, identity: str, seconds: float, timeout: float = 30, skip_silence: bool = True
    ) -> np.ndarray:
        """``seconds`` of ``identity``'s audio as float32 mono, from the first frame with sound in it
        (the SDK plays silence until the first packets are decoded) unless ``skip_silence=False``."""
        track = await self.remote_track(identity, "audio", timeout)
        chunks, wanted = [], round(seconds * RATE)
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)

        async def collect():
            got = 0
            async for event in stream:
                chunk = np.frombuffer(event.frame.data, np.int16)
                if skip_silence and not chunks and not chunk.any():
                    continue
                chunks.append(chunk.astype(np.float32) / 32768)
                got += len(chunk)
                if got >= wanted:
                    return

        try:
            await asyncio.wait_for(collect(), timeout)
        finally:
            await stream.aclose()
        return np.concatenate(chunks)[:wanted]

    async def receive_video(self, identity: str, frames: int = 10, timeout: float = 30) -> list[np.ndarray]:
        """``frames`` RGBA images (height, width, 4) of ``identity``'s video."""
        track = await self.remote_track(identity, "video", timeout)
        images = []
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)

        async def collect():
            async for event in stream:
                frame = event.frame
                images.append(
                    np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 4).copy()
                )
                if len(images) >= frames:
                    return

        try:
            await asyncio.wait_for(collect(), timeout)
        finally:
            await stream.aclose()
        return images

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.aclose()
        await self.room.disconnect()
