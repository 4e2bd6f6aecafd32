"""``lkplug devserver --demo``'s participant alice, inside the server: a 440 Hz tone (-6 dBFS peak) as
her microphone and colour bars (``peers.colour_bars``, 320x240, 15 fps) as her camera.

She is not an SDK participant: libwebrtc binds its ICE sockets on every host interface whatever its
configuration allows (``RtcConfiguration(ice_transport_type=RELAY)`` still opens them, and then cannot
connect without a TURN server), and the dev server opens nothing but 127.0.0.1. Her media is made
here and reaches subscribers through the same encoders and peer connections as anyone's.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from livekit.protocol import models

from .peers import FRAME, HEIGHT, RATE, WIDTH, colour_bars

FPS = 15


class PacedTrack(MediaStreamTrack):
    """Frames at real time: ``recv`` sleeps until the next one is due (the relay reads it once for
    every subscriber)."""

    def __init__(self, kind: str, period: float):
        super().__init__()
        self.kind, self.period = kind, period
        self.index, self.start = 0, None

    async def due(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.index += 1
            await asyncio.sleep(max(0.0, self.start + self.index * self.period - time.monotonic()))
        return self.index


class Tone(PacedTrack):
    def __init__(self, freq: float = 440.0, dbfs: float = -6.0):
        super().__init__("audio", FRAME * 2 / RATE)  # 20 ms, what Opus packs
        self.freq, self.amplitude = freq, 10 ** (dbfs / 20) * 32767

    async def recv(self) -> AudioFrame:
        index = await self.due()
        samples = FRAME * 2
        t = (np.arange(samples) + index * samples) / RATE
        data = (self.amplitude * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        # the same in both channels: aiortc's Opus encoder takes stereo, and an upmixed mono
        # would reach a mono listener 3 dB lower (libswresample spreads it at -3 dB)
        frame = AudioFrame.from_ndarray(np.repeat(data, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, index * samples, fractions.Fraction(1, RATE)
        return frame


class Bars(PacedTrack):
    def __init__(self):
        super().__init__("video", 1 / FPS)
        rgb = np.ascontiguousarray(colour_bars(WIDTH, HEIGHT)[..., :3])
        self.picture = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")

    async def recv(self) -> VideoFrame:
        index = await self.due()
        frame = self.picture.reformat()  # a copy: the encoder may hold the previous one
        frame.pts, frame.time_base = index * 90000 // FPS, fractions.Fraction(1, 90000)
        return frame


def demo_tracks() -> list[tuple[models.TrackInfo, MediaStreamTrack]]:
    """alice's microphone and camera, as (TrackInfo without sid, track)."""
    microphone = models.TrackInfo(
        type=models.TrackType.AUDIO,
        name="microphone",
        source=models.TrackSource.MICROPHONE,
        mime_type="audio/opus",
    )
    camera = models.TrackInfo(
        type=models.TrackType.VIDEO,
        name="camera",
        source=models.TrackSource.CAMERA,
        width=WIDTH,
        height=HEIGHT,
        mime_type="video/vp8",
    )
    return [(microphone, Tone()), (camera, Bars())]
