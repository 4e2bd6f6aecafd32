"""The delay from a publisher to a subscriber through the dev server (issue 17): alice (SDK) publishes a
click a second, bob (SDK) subscribes; each click's arrival at bob minus the moment alice's capture
took it. Both peers are in this process, so the SDKs' own delays (alice's 100 ms capture queue, bob's
jitter buffer) are in every figure: compare servers (checkouts) by the median, in runs close in time.

    python bench/devserver_latency.py [--seconds 20]
    PYTHONPATH=/work/main/core:/work/main/plugins python bench/devserver_latency.py   # another checkout

Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
from live_latency import click_times
from livekit import rtc

from lkplug_livekit.devserver.peers import FRAME, RATE, Peer
from lkplug_livekit.devserver.process import DevServerProcess


async def publish_clicks(peer: Peer, sent: list[float]) -> None:
    """A 10 ms click at -6 dBFS every second; ``sent`` gets the time each was captured."""
    source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("clicks", source)
    await peer.room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    click = np.full(FRAME, 16384, np.int16)
    silence = np.zeros(FRAME, np.int16)
    for index in range(10**9):
        samples = click if index % 100 == 0 else silence
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        if index % 100 == 0:
            sent.append(time.monotonic())


async def main(seconds: float) -> None:
    server = await DevServerProcess().start()
    alice = bob = None
    try:
        alice = await Peer.join(server.url, server.token("alice"))
        sent: list[float] = []
        publisher = asyncio.create_task(publish_clicks(alice, sent))
        bob = await Peer.join(server.url, server.token("bob"))
        heard = await click_times(await bob.remote_track("alice", "audio", timeout=30), seconds)
        publisher.cancel()
    finally:
        for peer in (bob, alice):
            if peer is not None:
                await peer.close()
        await server.stop()
    delays = []
    for t in heard:
        earlier = [s for s in sent if s <= t]
        if earlier and t - earlier[-1] < 0.9:
            delays.append(t - earlier[-1])
    print(
        f"publisher -> dev server -> subscriber: median {statistics.median(delays) * 1000:.1f} ms, "
        f"min {min(delays) * 1000:.1f} ms (n={len(delays)})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    asyncio.run(main(parser.parse_args().seconds))
