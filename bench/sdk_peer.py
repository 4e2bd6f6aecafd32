"""The bare-SDK baseline for bench/live_latency.py: what lkplug's track source and sink do, with
nothing of lkplug in between.

    python bench/sdk_peer.py relay URL TOKEN alice SECONDS   # subscribe alice, publish her back
    python bench/sdk_peer.py record URL TOKEN 'guest-' SECONDS  # subscribe every match, discard
"""

from __future__ import annotations

import asyncio
import sys

from livekit import rtc

RATE = 48000


async def first_audio(room: rtc.Room, prefix: str, count: int = 1) -> list[rtc.RemoteTrack]:
    while True:
        tracks = [
            pub.track
            for p in room.remote_participants.values()
            if p.identity.startswith(prefix)
            for pub in p.track_publications.values()
            if pub.kind == rtc.TrackKind.KIND_AUDIO and pub.track is not None
        ]
        if len(tracks) >= count:
            return tracks
        await asyncio.sleep(0.05)


async def relay(room: rtc.Room, identity: str) -> None:
    (track,) = await first_audio(room, identity)
    source = rtc.AudioSource(RATE, 1, queue_size_ms=200)  # as lkplug's track sink
    local = rtc.LocalAudioTrack.create_audio_track("relayed", source)
    await room.local_participant.publish_track(local, rtc.TrackPublishOptions())
    async for event in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
        await source.capture_frame(event.frame)


async def record(room: rtc.Room, prefix: str, count: int) -> None:
    async def drain(track):
        async for _ in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            pass

    await asyncio.gather(*(drain(t) for t in await first_audio(room, prefix, count)))


async def main(mode: str, url: str, token: str, who: str, seconds: float, count: int = 1) -> None:
    room = rtc.Room()
    await room.connect(url, token)
    job = relay(room, who) if mode == "relay" else record(room, who, count)
    try:
        await asyncio.wait_for(job, seconds)
    except asyncio.TimeoutError:
        pass
    await room.disconnect()


if __name__ == "__main__":
    mode, url, token, who, seconds, *count = sys.argv[1:]
    asyncio.run(main(mode, url, token, who, float(seconds), *map(int, count)))
