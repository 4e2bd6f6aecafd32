"""The ``track`` sink: publishes what reaches it as tracks of lkplug's participant: audio through
``AudioSource`` + ``LocalAudioTrack``, video through ``VideoSource`` + ``LocalVideoTrack``.

Audio from a file or a generator is paced at real time by the engine and goes through the SDK's
capture queue (200 ms), which starts full: the SDK takes 10 ms from it every 10 ms whether or not
anything is there, and the engine hands frames on in bursts (one decoded packet of the file, 93 ms
of a 44.1 kHz WAV, regrouped by soxr unevenly), so a queue that starts empty runs dry before a burst
and the SDK sends nothing for 10 ms: the listener's jitter buffer then conceals a dropout and the
tone comes back 10 ms late (a 180 degree turn of 440 Hz). Pictures beside such audio go out as the
audio of their time plays out (the queue holds it back), so the two stay together. When the
queue runs dry all the same (this process held up longer than the queue lasts: a busy machine, a
stage slower than real time), the run ends with a warning saying how long and where, since every
listener heard silence there.

Audio from a live source (a room's track: a relay) goes to WebRTC as it arrives, with no queue: the
network already paces it, and a queue drained by a second real-time clock keeps every stall's
backlog as latency for the rest of the run (estimated from the capture times: the queue climbed from
10 to 30-100 ms in 10 s on a loaded machine, in the bare SDK's relay as in lkplug's), while the
listener's jitter buffer absorbs the jitter and shrinks again.

With ``wait=S`` it holds the first frame until someone subscribes to one of its tracks (up to S
seconds), so a file played into a room is heard from its first second rather than from whenever the
listener's subscription completes."""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import time
from collections.abc import Callable

from lkplug import AudioContract, MediaError, Sink, UsageError, VideoContract
from lkplug.frames import square_pixels_advice

from . import video_encoding
from .connection import DISCONNECT_TIMEOUT, RoomConnection
from .selector import SOURCES

PLAYOUT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 20.0  # seconds publishing a track may take
QUEUE_MS = 200  # the capture queue for a source that is not live (it paces a file at real time)
DRY_SECONDS = 0.010  # the queue ran dry when a whole 10 ms the SDK takes found it empty
# ...and that was a gap when this much audio came after it (the end of the stream is no gap: the
# engine hands on the last part of a 10 ms frame only when the whole stream ends, which is later
# than the audio's end where the pictures go on)
DRY_FOLLOWED_SECONDS = 0.05
DRY_PLACES = 10  # places named in the warning (the amounts count them all)


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
        self._preroll_at = 0.0  # media seconds of its first sample
        # with a capture queue: when it runs dry (the monotonic clock; None before the first capture),
        # and where it did, as (media seconds, seconds of silence sent)
        self._dry_at: float | None = None
        self._dry: list[tuple[float, float]] = []
        # the last spell, until DRY_FOLLOWED_SECONDS of audio came after it: (at, late, audio since)
        self._dry_pending: list | None = None
        # pictures beside queued audio go out as the audio of their time plays out: at the audio's
        # origin (the monotonic clock at which media time 0 plays) plus their time. Until the first
        # capture tells it, the origin is the first frame's arrival plus the queue (the audio would
        # start then, were it paced as the frames come). Pictures wait in _due as [time, send, timer, when]
        self._with_queued_audio = False
        self._audio_origin: float | None = None
        self._due: list[list] = []
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
        self._with_queued_audio = audio is not None and bool(self.queue_ms)
        if audio is not None:
            await self._publish_audio(audio.rate, audio.channels)
        if video is not None and getattr(video, "width", None):
            await self._publish_video(video.width, video.height, video.fps)
        if self._published and (self.wait or self.wait_for):
            await self._hold()

    async def write(self, frame) -> None:
        from livekit import rtc

        if self.connection.lost:  # the server ended our session: nobody hears what we send
            raise self.connection.lost
        if self._audio_origin is None:  # the first frame: the audio would start a queue later
            self._audio_origin = time.monotonic() - frame.time + self.queue_ms / 1000
        if frame.kind == "audio":
            if "audio" not in self._published:
                await self._publish_audio(frame.sample_rate, frame.channels)
            data, at = frame.data, frame.time
            if self._preroll is not None:
                if not self._preroll:
                    self._preroll_at = frame.time
                self._preroll.append(data)
                if sum(map(len, self._preroll)) * 1000 < self.queue_ms * frame.sample_rate:
                    return
                data, at = self._end_preroll(), self._preroll_at
            self._note_dry(frame.time)
            await self._capture(self._published["audio"][0], data, at)
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
            send = functools.partial(
                self._published["video"][0].capture_frame, picture, timestamp_us=round(frame.time * 1e6)
            )
            if self._with_queued_audio:
                self._send_at(frame.time, send)
            else:
                send()

    def _send_at(self, at: float, send: Callable[[], None]) -> None:
        """``send`` the picture of ``at`` media seconds as the audio of that time plays out (at once
        if it does already)."""
        delay = self._audio_origin + at - time.monotonic()
        if delay <= 0:
            send()
            return
        entry: list = [at, send, None, time.monotonic() + delay]
        entry[2] = asyncio.get_running_loop().call_later(delay, self._send_due, entry)
        self._due.append(entry)

    def _send_due(self, entry: list) -> None:
        self._due.remove(entry)
        entry[1]()

    def _end_preroll(self):
        """The audio held back for the capture queue, as one (samples, channels) block."""
        import numpy as np

        held, self._preroll = self._preroll, None
        return np.concatenate(held)

    def _note_dry(self, at: float) -> None:
        """Before a capture of audio from ``at`` media seconds: whether the queue ran dry before it.
        The SDK takes 10 ms from it every 10 ms from the first capture on, so it runs dry when the
        audio captured so far has been taken (its own ``queued_duration`` is an estimate that a dry
        spell leaves behind, as it counts the silence as audio taken)."""
        if self.queue_ms and self._dry_at is not None:
            late = time.monotonic() - self._dry_at
            if late >= DRY_SECONDS:
                self._dry_pending = [at, late, 0.0]  # one before it, hardly followed, was no gap
                self._audio_origin += late  # what comes now plays that much later

    async def _capture(self, audio_source, data, at: float) -> None:
        """``data``: (samples, channels) s16 at the audio source's rate, from ``at`` media seconds."""
        from livekit import rtc

        if self.queue_ms:
            now = time.monotonic()
            if self._dry_at is None:  # the first: the SDK plays the queue out from now on
                self._audio_origin = now - at
                due, self._due = self._due, []
                for picture_at, send, timer, _ in due:  # timed by the first frame's arrival: again
                    timer.cancel()
                    self._send_at(picture_at, send)
            self._dry_at = max(self._dry_at or now, now) + len(data) / audio_source.sample_rate
            pending = self._dry_pending
            if pending is not None:
                pending[2] += len(data) / audio_source.sample_rate
                if pending[2] >= DRY_FOLLOWED_SECONDS:
                    self._dry.append((pending[0], pending[1]))
                    self._dry_pending = None
        await audio_source.capture_frame(
            rtc.AudioFrame(data.tobytes(), audio_source.sample_rate, data.shape[1], len(data))
        )

    @property
    def warnings(self) -> list[str]:
        """Where the capture queue ran dry: what every listener heard as silence."""
        dry = self._dry
        if not dry:  # (a spell still pending had too little audio after it: the stream's end)
            return []
        where = ", ".join(f"{at:.2f} s ({late * 1000:.0f} ms)" for at, late in dry[:DRY_PLACES])
        more = f" and {len(dry) - DRY_PLACES} more places" if len(dry) > DRY_PLACES else ""
        total = sum(late for _, late in dry)
        return [
            f"{self.name}: the audio sent ran dry for {total * 1000:.0f} ms in all, before {where}{more}:"
            " listeners heard silence there (this process was held up: a busy machine, or a stage"
            " slower than real time)"
        ]

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
        self._preroll = [] if self.queue_ms else None
        track = rtc.LocalAudioTrack.create_audio_track(self.name, audio_source)
        options = rtc.TrackPublishOptions(source=self._track_source("audio"))
        await self._publish("audio", audio_source, track, options)

    async def _publish_video(self, width: int, height: int, fps: float | None = None) -> None:
        """``fps``: the pictures' nominal rate (None: not known, a relayed track's), sent in full
        (``video_encoding``: the SDK's default for the size capped a 30 fps 320x240 file and a relayed
        camera at 20 fps, every third picture lost)."""
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
            video_encoding=video_encoding(width, height, fps),
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
                await self._capture(published["audio"][0], self._end_preroll(), self._preroll_at)
            if self._due:  # the last pictures go out with the audio beside them
                await asyncio.sleep(max(0.0, max(entry[3] for entry in self._due) - time.monotonic()))
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
            for _, _, timer, _ in self._due:  # the session ended: nobody would see them
                timer.cancel()
            self._due.clear()
            for media_source, _ in published.values():
                await media_source.aclose()
            await self.connection.release()
