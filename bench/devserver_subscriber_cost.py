"""What one subscriber cost the dev server when it encoded media for each subscriber (issue 17's
+13.9 MB step), measured piece by piece in this process: RSS (anonymous and file-backed, from
/proc/self/smaps_rollup) and Python objects (tracemalloc) around an aiortc peer connection, a VP8
encoder at the demo's 320x240 and an Opus encoder, each run as aiortc's sender runs it (in the loop's
executor). Since the server forwards encoded frames, a subscriber costs only the peer connection.

    python bench/devserver_subscriber_cost.py

Linux only.
"""

from __future__ import annotations

import asyncio
import fractions
import gc
import tracemalloc

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from av import AudioFrame, VideoFrame

from lkplug_livekit.devserver.peers import colour_bars


def resident_mb() -> tuple[float, float]:
    """(anonymous, file-backed) resident MB of this process."""
    found = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            name, value = line.split()[:2]
            found[name] = int(value) / 1024 if value.isdigit() else 0
    return found["Anonymous:"], found["Rss:"] - found["Anonymous:"]


class Steps:
    def __init__(self):
        tracemalloc.start()
        self.last = (*resident_mb(), tracemalloc.get_traced_memory()[0])

    def print(self, name: str) -> None:
        gc.collect()
        now = (*resident_mb(), tracemalloc.get_traced_memory()[0])
        anon, file, objects = (b - a for a, b in zip(self.last, now, strict=True))
        print(
            f"{name:46s} RSS {anon + file:+6.2f} MB (anonymous {anon:+5.2f}, file-backed {file:+5.2f}), "
            f"Python objects {objects / 1e6:+5.2f} MB",
            flush=True,
        )
        self.last = now


async def encode_video(encoder: Vp8Encoder, frames: range) -> None:
    rgb = np.ascontiguousarray(colour_bars(320, 240)[..., :3])
    picture = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    loop = asyncio.get_running_loop()
    for index in frames:
        frame = picture.reformat()
        frame.pts, frame.time_base = index * 6000, fractions.Fraction(1, 90000)
        await loop.run_in_executor(None, encoder.encode, frame, index == 0)


async def main() -> None:
    loop = asyncio.get_running_loop()
    tone = (16000 * np.sin(2 * np.pi * 440 * np.arange(960) / 48000)).astype(np.int16)
    steps = Steps()
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    steps.print("a peer connection (offer, ICE gathered)")
    await loop.run_in_executor(None, bytes, 100_000)
    steps.print("the loop's first executor thread")
    video = Vp8Encoder()
    await encode_video(video, range(150))
    steps.print("a VP8 encoder, 320x240, 150 frames")
    await encode_video(video, range(150, 600))
    steps.print("  450 frames more")
    audio = OpusEncoder()
    for index in range(500):
        frame = AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * 960, fractions.Fraction(1, 48000)
        await loop.run_in_executor(None, audio.encode, frame, False)
    steps.print("an Opus encoder, 500 frames of 20 ms")
    second = Vp8Encoder()
    await encode_video(second, range(150))
    steps.print("a second VP8 encoder (a second subscriber)")
    del video, audio, second
    steps.print("the encoders deleted")
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
