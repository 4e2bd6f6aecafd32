"""``lkplug devserver --demo``'s participant alice, inside the server: a 440 Hz tone (-6 dBFS peak) as
her microphone and colour bars (``peers.colour_bars``, 320x240, 15 fps) as her camera.

She is not an SDK participant: libwebrtc binds its ICE sockets on every host interface whatever its
configuration allows (``RtcConfiguration(ice_transport_type=RELAY)`` still opens them, and then cannot
connect without a TURN server), and the dev server opens nothing but 127.0.0.1. Her media is encoded
once, when she is made, and played out in a loop while someone subscribes: the tone's loop is 1 s
(440 whole periods, so it joins without a step), the picture's is a keyframe and 14 interframes (the
picture does not change). So she costs no encoder and next to no CPU, and reaches subscribers through
the same forwarding as anyone's media (``forward.py``).
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from livekit.protocol import models

from .forward import Fanout
from .peers import HEIGHT, RATE, WIDTH, colour_bars

FPS = 15
OPUS_FRAME = RATE // 50  # 20 ms, what WebRTC's Opus packs
VIDEO_CLOCK = 90000  # RTP's clock for video


def encoded_tone(freq: float = 440.0, dbfs: float = -6.0, seconds: int = 1) -> list[bytes]:
    """Opus packets (48 kHz stereo, 20 ms each) of ``seconds`` of a sine that loop without a step:
    encoded after as long a run-in, so the encoder's state at the loop's start is the state at its end."""
    amplitude = 10 ** (dbfs / 20) * 32767
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "stereo", "s16"
    encoder.bit_rate = 96000
    count = 50 * seconds
    packets = []
    for index in range(3 * count):
        t = (np.arange(OPUS_FRAME) + index * OPUS_FRAME) / RATE
        data = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        # the same in both channels: a mono listener gets the tone at its level
        frame = av.AudioFrame.from_ndarray(np.repeat(data, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, index * OPUS_FRAME
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets[count : 2 * count]


def encoded_bars(fps: int = FPS) -> list[bytes]:
    """One second of VP8 colour bars: a keyframe, then interframes."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base, encoder.framerate = fractions.Fraction(1, fps), fractions.Fraction(fps)
    encoder.bit_rate, encoder.gop_size = 500_000, 10 * fps
    encoder.options = {"lag-in-frames": "0"}
    rgb = np.ascontiguousarray(colour_bars(WIDTH, HEIGHT)[..., :3])
    picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    packets = []
    for index in range(fps):
        frame = picture.reformat()
        frame.pts = index
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


class Playout:
    """Encoded frames played out in a loop, in real time, to ``fanout`` while it has subscribers.
    ``period``: seconds per frame; ``step``: RTP clock ticks per frame. A keyframe request restarts
    the video loop (its first frame is the keyframe)."""

    def __init__(self, kind: str, frames: list[bytes], period: float, step: int, clock: int):
        self.fanout = Fanout(kind, "audio/opus" if kind == "audio" else "video/vp8", self.rewind)
        self.frames, self.period, self.step = frames, period, step
        self.time_base = fractions.Fraction(1, clock)
        self.position, self.index, self.start = 0, -1, time.monotonic()

    def rewind(self) -> None:
        self.position = 0

    async def run(self) -> None:
        while True:
            await self.fanout.subscribed.wait()
            due = self.index + 1
            late = (time.monotonic() - self.start) / self.period - due
            if late > 10:  # back after nobody listened: go on from now (timestamps jump, as a pause)
                due += int(late)
            await asyncio.sleep(max(0.0, self.start + due * self.period - time.monotonic()))
            self.index = due
            data = self.frames[self.position]
            self.position = (self.position + 1) % len(self.frames)
            packet = av.Packet(data)
            packet.pts, packet.time_base = due * self.step, self.time_base
            self.fanout.push(packet, self.fanout.kind == "audio" or not data[0] & 1)


def demo_tracks() -> list[tuple[models.TrackInfo, Playout]]:
    """alice's microphone and camera, as (TrackInfo without sid, playout)."""
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
    return [
        (microphone, Playout("audio", encoded_tone(), OPUS_FRAME / RATE, OPUS_FRAME, RATE)),
        (camera, Playout("video", encoded_bars(), 1 / FPS, VIDEO_CLOCK // FPS, VIDEO_CLOCK)),
    ]
