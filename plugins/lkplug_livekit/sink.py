"""The ``track`` sink: publishes what reaches it as a track of lkplug's participant
(``AudioSource`` + ``LocalAudioTrack``), paced by the SDK's small capture queue.

With ``wait=S`` it holds the first frame until someone subscribes (up to S seconds), so a file played
into a room is heard from its first second rather than from whenever the listener's subscription
completes."""

from __future__ import annotations

import asyncio

from lkplug import AudioContract, Sink

from .connection import RoomConnection
from .selector import SOURCES

PLAYOUT_TIMEOUT = 10.0


class TrackSink(Sink):
    realtime = True  # --pace auto publishes a file at real time
    emits = "a track in the room"
    # WebRTC works on 10 ms of 16-bit audio; the engine rechunks to that
    accepts = {"audio": AudioContract(sample_formats=("s16",), frame_ms=10)}

    def __init__(self, name: str, source: str = "microphone", queue_ms: int = 200, wait: float = 0.0):
        self.name, self.source, self.queue_ms, self.wait = name, source, queue_ms, wait
        self.connection: RoomConnection | None = None
        self._audio = None  # (AudioSource, publication sid)
        self._notify = print

    def bind(self, context) -> None:
        self.connection = RoomConnection.shared(context)
        self.connection.can_publish = True
        self._notify = context.notify

    async def write(self, frame) -> None:
        from livekit import rtc

        if frame.kind != "audio":
            return
        if self._audio is None:
            await self._publish_audio(frame)
        data = frame.data
        await self._audio[0].capture_frame(
            rtc.AudioFrame(data.tobytes(), frame.sample_rate, data.shape[1], len(data))
        )

    async def _publish_audio(self, frame) -> None:
        from livekit import rtc

        room = await self.connection.acquire()
        audio_source = rtc.AudioSource(frame.sample_rate, frame.channels, queue_size_ms=self.queue_ms)
        track = rtc.LocalAudioTrack.create_audio_track(self.name, audio_source)
        options = rtc.TrackPublishOptions(source=getattr(rtc.TrackSource, SOURCES[self.source][0]))
        subscribed = asyncio.Event()
        room.on("local_track_subscribed", lambda local: subscribed.set() if local is track else None)
        publication = await room.local_participant.publish_track(track, options)
        self._audio = (audio_source, publication.sid)
        self._notify(f"publishing {self.name} in room {room.name}")
        if self.wait:
            try:
                await asyncio.wait_for(subscribed.wait(), self.wait)
            except asyncio.TimeoutError:
                self._notify(f"nobody subscribed to {self.name} within {self.wait:g} s: sending anyway")

    async def close(self) -> None:
        if self._audio is None:
            return
        audio_source, sid = self._audio
        self._audio = None
        try:
            # nothing queued is lost
            await asyncio.wait_for(audio_source.wait_for_playout(), PLAYOUT_TIMEOUT)
            await self.connection.room.local_participant.unpublish_track(sid)
        finally:
            await audio_source.aclose()
            await self.connection.release()
