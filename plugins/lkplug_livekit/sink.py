"""The ``track`` sink: publishes what reaches it as tracks of lkplug's participant: audio through
``AudioSource`` + ``LocalAudioTrack``, video through ``VideoSource`` + ``LocalVideoTrack``.

Audio from a file or a generator is paced at real time by the engine and goes through the SDK's
capture queue (200 ms), which starts full: the SDK takes 10 ms from it every 10 ms whether or not
anything is there, and the engine hands frames on in bursts (one decoded packet of the file, 93 ms
of a 44.1 kHz WAV, regrouped by soxr unevenly), so a queue that starts empty runs dry before a burst
and the SDK sends nothing for 10 ms: the listener's jitter buffer then conceals a dropout and the
tone comes back 10 ms late (a 180 degree turn of 440 Hz). Audio from a live
source (a room's track: a relay) goes to WebRTC as it arrives, with no queue: the network already paces
it, and a queue drained by a second real-time clock keeps every stall's backlog as latency for the
rest of the run (estimated from the capture times: the queue climbed from 10 to 30-100 ms in 10 s on a loaded
machine, in the bare SDK's relay as in lkplug's), while the listener's jitter buffer absorbs the
jitter and shrinks again.

With ``wait=S`` it holds the first frame until someone subscribes to one of its tracks (up to S
seconds), so a file played into a room is heard from its first second rather than from whenever the
listener's subscription completes."""

from __future__ import annotations

import asyncio
import fnmatch

from lkplug import AudioContract, MediaError, Sink, UsageError, VideoContract
from lkplug.frames import square_pixels_advice

from .connection import DISCONNECT_TIMEOUT, RoomConnection
from .selector import SOURCES

PLAYOUT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 20.0  # seconds publishing a track may take
QUEUE_MS = 200  # the capture queue for a source that is not live (it paces a file at real time)


class TrackSink(Sink):
    realtime = True  # --pace auto publishes a file at real time
    emits = "a track in the room"
    accepts = {
        # WebRTC works on 10 ms of 16-bit audio; the engine rechunks to that. 10 ms must be a whole
        # number of samples (the SDK takes every frame as 10 ms: 220 samples of 22050 Hz played 0.2 %
        # slow, 439.0 Hz for 440, with a click every frame), so everything is resampled (soxr) to
        # 48 kHz, Opus's own rate. Measured through the dev server: 24 kHz, though whole, came out
        # with THD+N -6.6 dB against -42 dB at 48 kHz, so it is not offered
        "audio": AudioContract(rates=(48000,), sample_formats=("s16",), frame_ms=10),
        # the SDK's I420 is FFmpeg's yuv420p
        "video": VideoContract(pixel_formats=("yuv420p",)),
    }

    def __init__(
        self,
        name: str,
        source: str = "",
        queue_ms: int | None = None,
        wait: float = 0.0,
        simulcast: bool = True,
        wait_for: str = "",
    ):
        """``queue_ms``: the SDK's capture queue in ms, a multiple of 10; 0 passes each 10 ms frame
        on as it comes (nothing paces it: for a source that arrives at real time); None: 0 for a
        live source, ``QUEUE_MS`` otherwise."""
        if queue_ms is not None and (queue_ms < 0 or queue_ms % 10):  # the SDK panics (abort) else
            raise UsageError(f"queue_ms={queue_ms}: the SDK's capture queue takes multiples of 10 ms")
        self.name, self.source, self.queue_ms, self.wait = name, source, queue_ms, wait
        self.wait_for = wait_for
        self.simulcast = simulcast
        self.connection: RoomConnection | None = None
        self._published: dict[str, tuple] = {}  # kind -> (AudioSource or VideoSource, publication sid)
        # audio held back until the capture queue can start full (None: started, or no queue)
        self._preroll: list | None = None
        self._with_video = False  # a video track goes out beside the audio
        self._sar_told = False  # the first picture's pixel shape was looked at
        self._tracks: set = set()  # this sink's local tracks
        self._subscriptions = 0  # subscriptions to them signalled so far (one per subscriber)
        self._changed = asyncio.Event()  # a subscription, or someone joined
        self._present_before = False  # wait_for's participant was in the room before we published
        self._notify = print

    def bind(self, context) -> None:
        if self.queue_ms is None:
            self.queue_ms = 0 if getattr(context, "live", False) else QUEUE_MS
        self.connection = RoomConnection.shared(context)
        self.connection.can_publish = True
        self.connection.on_lost(self._changed.set)  # a hold for a listener ends with the session
        self._notify = context.notify

    async def start(self, formats) -> None:
        # publish before frames flow: a live source would otherwise queue up while the track is
        # being published, and that backlog would stay in the capture queue as added latency.
        # Every kind first, then one wait: a listener of either track releases the hold (holding
        # the audio while waiting for a video listener once recorded 4 s of silence, exit 0)
        audio, video = formats.get("audio"), formats.get("video")
        self._with_video = video is not None
        if audio is not None:
            await self._publish_audio(audio.rate, audio.channels)
        if video is not None and getattr(video, "width", None):
            await self._publish_video(video.width, video.height)
        if self._published and (self.wait or self.wait_for):
            await self._hold()

    async def write(self, frame) -> None:
        from livekit import rtc

        if self.connection.lost:  # the server ended our session: nobody hears what we send
            raise self.connection.lost
        if frame.kind == "audio":
            if "audio" not in self._published:
                await self._publish_audio(frame.sample_rate, frame.channels)
            data = frame.data
            if self._preroll is not None:
                self._preroll.append(data)
                if sum(map(len, self._preroll)) * 1000 < self.queue_ms * frame.sample_rate:
                    return
                data = self._end_preroll()
            await self._capture(self._published["audio"][0], data)
        elif frame.kind == "video":
            if "video" not in self._published:
                await self._publish_video(frame.width, frame.height)
            if not self._sar_told:  # once: WebRTC has no SAR, a receiver shows every pixel square
                self._sar_told = True
                advice = square_pixels_advice(frame)
                if advice:
                    self._notify(f"warning: {self.name}: a track carries no pixel aspect ratio: {advice}")
            i420 = rtc.VideoBufferType.I420
            picture = rtc.VideoFrame(frame.width, frame.height, i420, frame.data.tobytes())
            self._published["video"][0].capture_frame(picture, timestamp_us=round(frame.time * 1e6))

    def _end_preroll(self):
        """The audio held back for the capture queue, as one (samples, channels) block."""
        import numpy as np

        held, self._preroll = self._preroll, None
        return np.concatenate(held)

    @staticmethod
    async def _capture(audio_source, data) -> None:
        """``data``: (samples, channels) s16 at the audio source's rate."""
        from livekit import rtc

        await audio_source.capture_frame(
            rtc.AudioFrame(data.tobytes(), audio_source.sample_rate, data.shape[1], len(data))
        )

    def _track_source(self, kind: str):
        """The TrackSource the room shows: ``source=`` if it is of this kind, else the usual one."""
        from livekit import rtc

        word = self.source if SOURCES.get(self.source, (None, None))[1] == kind else None
        word = word or ("microphone" if kind == "audio" else "camera")
        return getattr(rtc.TrackSource, SOURCES[word][0])

    async def _publish(self, kind: str, media_source, track, options) -> None:
        # one connection for all of this sink's tracks (released once, in close)
        room = self.connection.room if self._published else await self.connection.acquire()
        if not self._published:
            room.on("local_track_subscribed", self._on_subscribed)
            room.on("participant_connected", self._on_joined)
            self._present_before = self._awaited_present(room)
        self._tracks.add(track)
        try:
            # bounded: the SDK answers through the room's event task, which ends with the session
            # (a server gone, a namesake replacing us): an unbounded wait could then last for ever
            publication = await asyncio.wait_for(
                room.local_participant.publish_track(track, options), PUBLISH_TIMEOUT
            )
        except asyncio.TimeoutError:
            raise self.connection.lost or MediaError(
                f"publishing {self.name} in room {room.name} took over {PUBLISH_TIMEOUT:g} s"
            ) from None
        self._published[kind] = (media_source, publication.sid)
        self._notify(f"publishing {self.name} ({kind}) in room {room.name}")

    def _on_subscribed(self, local) -> None:
        if local in self._tracks:
            self._subscriptions += 1
            self._changed.set()

    def _on_joined(self, participant) -> None:
        self._changed.set()

    async def _hold(self) -> None:
        """Hold the first frame until a subscription to one of this sink's tracks is signalled
        (``wait_for``: one made once a participant of that name is in the room: theirs, as the server
        signals each subscriber's), or ``wait`` seconds have passed."""
        listener = f"{self.wait_for} to listen" if self.wait_for else "someone to subscribe"
        self._notify(f"waiting for {listener} to {self.name}")
        try:
            await asyncio.wait_for(self._listener(self.connection.room), self.wait or None)
        except asyncio.TimeoutError:
            who = f"{self.wait_for} did not subscribe" if self.wait_for else "nobody subscribed"
            self._notify(f"{who} to {self.name} within {self.wait:g} s: sending anyway")

    async def _listener(self, room) -> None:
        since = None  # the count of subscriptions when the awaited participant was first seen
        while True:
            self._changed.clear()
            if self.connection.lost:
                raise self.connection.lost
            if not self.wait_for:
                if self._subscriptions:
                    return
            elif since is None:
                if self._awaited_present(room):
                    # there before we published: the first subscription may be theirs
                    since = 0 if self._present_before else self._subscriptions
                    continue
            elif self._subscriptions > since:
                return
            await self._changed.wait()

    def _awaited_present(self, room) -> bool:
        return bool(self.wait_for) and any(
            fnmatch.fnmatchcase(p.identity, self.wait_for) for p in room.remote_participants.values()
        )

    async def _publish_audio(self, rate: int, channels: int) -> None:
        from livekit import rtc

        audio_source = rtc.AudioSource(rate, channels, queue_size_ms=self.queue_ms)
        # not beside video: the queue's 200 ms would put the audio that far behind the pictures,
        # which go out as they come (beside video the early bursts may still leave it dry)
        self._preroll = [] if self.queue_ms and not self._with_video else None
        track = rtc.LocalAudioTrack.create_audio_track(self.name, audio_source)
        options = rtc.TrackPublishOptions(source=self._track_source("audio"))
        await self._publish("audio", audio_source, track, options)

    async def _publish_video(self, width: int, height: int) -> None:
        from livekit import rtc

        video_source = rtc.VideoSource(width, height)
        # the SDK sends an all-zero I420 picture (Y 0: below video black) 10 times a second from now
        # until the first capture, and a listener got those while we waited for it and until the
        # first frame came; a capture before the track is published reaches no encoder and ends that
        black = rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, bytes(width * height * 3 // 2))
        video_source.capture_frame(black)
        track = rtc.LocalVideoTrack.create_video_track(self.name, video_source)
        # the size that goes in is the size sent: libwebrtc would otherwise start a 1280x720 track at
        # 640x360 (its low first bandwidth estimate) or shrink it under CPU load, and the server
        # forwards what it gets (the frame rate gives way instead)
        options = rtc.TrackPublishOptions(
            source=self._track_source("video"),
            simulcast=self.simulcast,
            degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION,
        )
        await self._publish("video", video_source, track, options)

    async def close(self) -> None:
        published, self._published = self._published, {}
        if not published:
            return
        room = self.connection.room
        if room is not None:
            room.off("local_track_subscribed", self._on_subscribed)
            room.off("participant_connected", self._on_joined)
        try:
            if self.connection.lost:
                return  # the session is over: nothing to play out or unpublish
            if "audio" in published and self._preroll:  # a clip shorter than the queue
                await self._capture(published["audio"][0], self._end_preroll())
            if "audio" in published:  # nothing queued is lost
                await asyncio.wait_for(published["audio"][0].wait_for_playout(), PLAYOUT_TIMEOUT)
            for _, sid in published.values():
                try:  # bounded as leaving is (release), which unpublishes anyway
                    await asyncio.wait_for(
                        self.connection.room.local_participant.unpublish_track(sid), DISCONNECT_TIMEOUT
                    )
                except asyncio.TimeoutError:
                    self._notify(f"warning: unpublishing {self.name} took over {DISCONNECT_TIMEOUT:g} s")
        finally:
            for media_source, _ in published.values():
                await media_source.aclose()
            await self.connection.release()
