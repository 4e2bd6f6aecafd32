"""The ``track`` source: a participant's track, subscribed with the real SDK (``AudioStream``).

It waits for the participant and the track, re-subscribes after an unpublish/republish or an SDK
reconnect (the output continues), and ends when the participant leaves, unless ``follow=true``. A
departure followed by a return within ``DEPARTURE_TIMEOUT`` (a reconnect, theirs or lkplug's) is a
gap, not the end; a participant really gone (one who left: the server says why) ends the recording at
once, with an error when ``-t`` was not reached.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from lkplug import AudioFormat, AudioFrame, MediaError, Source, VideoFrame
from lkplug.frames import video_shape
from lkplug.waiting import wait_either, wait_event

from . import SDK_PIXEL_FORMATS
from .concealment import Concealment, bounded, describe
from .connection import RoomConnection
from .selector import TrackSelector, source_word

# how long a departed participant may take to come back before the recording ends (seconds): LiveKit
# keeps a participant whose connection dropped this long (its departure timeout) for a resume
DEPARTURE_TIMEOUT = 20.0

# why a participant left, when it means they come back at once: their own full reconnect replaces them
# (DUPLICATE_IDENTITY), a server moves them (MIGRATION). Without a reason (a server that does not say,
# or lkplug's own reconnect) they may be back within DEPARTURE_TIMEOUT. Any other reason (they left,
# were removed, the room closed) is the end.
COMING_BACK = {None, "DUPLICATE_IDENTITY", "MIGRATION"}

HINT_AFTER = 10.0  # seconds of waiting before saying who is in the room
FRAME_MS = 10  # the SDK's own frame length, when the run does not say

ROOM_EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "reconnected",
    "disconnected",
)


class TrackSource(Source):
    live = True
    # what a fan-out sink template may use: wav:rec/{identity}-{source}.wav
    fields = ("identity", "source", "name", "sid", "kind", "room")

    def __init__(
        self,
        selector: str | TrackSelector,
        wait: float = 0.0,
        follow: bool = False,
        rate: int = 0,
        channels: int = 0,
        format: str = "yuv420p",
    ):
        self.selector = selector if isinstance(selector, TrackSelector) else TrackSelector.parse(selector)
        self.fans_out = self.selector.fans_out
        self.wait, self.follow = wait, follow
        self.rate, self.channels = rate or 48000, channels or 1
        self.pixel_format = format  # what the SDK converts video to
        self.connection: RoomConnection | None = None
        self.context = None
        self.ended = False
        self._joined = False
        self._changed = asyncio.Event()
        self._notify = print
        self.frame_ms = FRAME_MS
        self._last: str | None = None  # the track received last ("alice/microphone")
        self.received = 0.0  # seconds of media handed on
        self.concealed: list = []  # where the receiver made audio up (Concealment.spans)

    def bind(self, context) -> None:
        self.context = context
        self.connection = RoomConnection.shared(context)
        self.connection.can_subscribe = True
        self.connection.on_lost(self._poke)
        self._notify = context.notify
        # frames as long as the chain allows (the SDK regroups its 10 ms frames on its own threads)
        self.frame_ms = round(context.frame_ms or FRAME_MS)

    def probe(self) -> dict:
        self.connection.check()
        if self.selector.kind == "video":
            return {"video": None}  # the picture size is known once the first frame arrives
        # the SDK converts whatever the track carries to the rate and layout asked for
        size = self.rate * self.frame_ms // 1000
        return {"audio": AudioFormat(self.rate, self.channels, "s16", size)}

    def _poke(self, *args) -> None:
        self._changed.set()

    async def instances(self):
        """Fan-out: one stream per matching participant, for the whole run (a participant who leaves
        and comes back continues into the same outputs). Ends when every stream has ended and no new
        one appeared for ``wait`` seconds (``wait=0``: runs until stopped)."""
        room = await self.connection.acquire()
        self._joined = True
        for event in ROOM_EVENTS:
            room.on(event, self._poke)
        loop = asyncio.get_running_loop()
        streams: dict[str, TrackSource] = {}
        quiet_since = loop.time()
        hint_at = loop.time() + HINT_AFTER  # a glob or room that matches nobody waits forever without it
        try:
            while True:
                self._changed.clear()
                if self.connection.lost:
                    raise self.connection.lost
                if not streams and hint_at is not None and loop.time() >= hint_at:
                    self._notify(f"still waiting for {self.selector}: {self.who_is_there()}")
                    hint_at = None
                for participant in list(room.remote_participants.values()):
                    identity = participant.identity
                    if identity in streams or not self.selector.matches(identity):
                        continue
                    publication = self.selector.pick(list(participant.track_publications.values()))
                    if publication is None:
                        continue
                    selector = dataclasses.replace(self.selector, identity=identity)
                    stream = TrackSource(
                        selector, self.wait, True, self.rate, self.channels, self.pixel_format
                    )
                    stream.bind(self.context)
                    streams[identity] = stream
                    yield self._fields(room, participant, publication), stream
                if any(not s.ended for s in streams.values()):
                    quiet_since = loop.time()
                elif self.wait and loop.time() - quiet_since > self.wait:
                    return
                # streams end without a room event: look again now and then (a cancellation that
                # comes with an event must end this loop: asyncio.wait_for of 3.11 would swallow it)
                await wait_event(self._changed, 0.5)
        finally:
            for event in ROOM_EVENTS:
                room.off(event, self._poke)

    def _fields(self, room, participant, publication) -> dict[str, str]:
        source = source_word(publication.source)
        return {
            "identity": participant.identity,
            "source": source,
            "name": publication.name or source,
            "sid": publication.sid,
            "kind": self.selector.kind,
            "room": room.name,
            "stream": f"{participant.identity}/{publication.name or source}",
        }

    async def frames(self):
        room = await self.connection.acquire()
        self._joined = True
        for event in ROOM_EVENTS:
            room.on(event, self._poke)
        try:
            elapsed = 0.0  # media seconds delivered: a track that comes back continues from here
            found = previous = None
            while True:
                found = found or await self._subscribe(room, received=elapsed > 0, previous=previous)
                if found is None:
                    if previous is not None:  # they left while we waited for their track to come back
                        self._left(room, previous.identity, elapsed, waited=False)
                    return
                participant, publication = found
                self._last = f"{participant.identity}/{publication.name or publication.sid}"
                self._notify(f"receiving {self._last}")
                first_us = None
                start = elapsed
                async for event in self._receive(room, participant, publication):
                    if self.selector.kind == "audio":
                        frame = audio_frame(event.frame, round(elapsed * event.frame.sample_rate))
                    else:  # the sender's capture timestamps, from where the last track ended
                        first_us = event.timestamp_us if first_us is None else first_us
                        frame = video_frame(
                            event.frame, self.pixel_format, start + (event.timestamp_us - first_us) / 1e6
                        )
                    elapsed = self.received = frame.time + frame.duration
                    yield frame
                if self.connection.lost:  # replaced by a namesake, or removed: not "they left"
                    raise self.connection.lost
                found, previous = None, participant
                if not self.follow and self._gone(room, participant):
                    self._left(room, participant.identity, elapsed, waited=False)
                    return
                left = participant.identity not in {p.identity for p in room.remote_participants.values()}
                if left and not self.follow:  # gone, or reconnecting: wait as long as LiveKit would
                    found = await self._subscribe(room, received=True, wait=DEPARTURE_TIMEOUT)
                    if found is None:
                        self._left(room, participant.identity, elapsed)
                        return
        finally:
            self.ended = True
            for event in ROOM_EVENTS:
                room.off(event, self._poke)

    def _left(self, room, identity: str, elapsed: float, waited: bool = True) -> None:
        """The participant is really gone (or lkplug's own connection is): the end, and an error
        when ``-t`` asked for more. ``waited``: after ``DEPARTURE_TIMEOUT`` for a return."""
        if room.isconnected() and not self.connection.reconnecting:
            what = f"{identity} left the room"
        else:  # they vanished with lkplug's own connection: not their leaving
            what = self.connection.server_lost()
        duration = getattr(self.context, "duration", None)
        if duration is not None and elapsed < duration:
            why = f" and did not come back within {DEPARTURE_TIMEOUT:g} s" if waited else ""
            raise MediaError(f"{what} after {elapsed:.1f} s of the {duration:g} s asked (-t){why}")
        self._notify(what)

    @staticmethod
    def _gone(room, participant) -> bool:
        """Has ``participant`` left for good: no longer in the room, with a reason that is the end?"""
        if room.remote_participants.get(participant.identity) is participant or not room.isconnected():
            return False
        from livekit.rtc import DisconnectReason

        reason = participant.disconnect_reason
        return (None if reason is None else DisconnectReason.Name(reason)) not in COMING_BACK

    def _find(self, room):
        for participant in room.remote_participants.values():
            if self.selector.matches(participant.identity):
                publication = self.selector.pick(list(participant.track_publications.values()))
                if publication is not None:
                    return participant, publication
        return None

    async def _subscribe(self, room, received: bool, wait: float | None = None, previous=None):
        """Wait (up to ``wait`` seconds, default the ``wait`` parameter, 0 = forever) until the
        selected track is subscribed; None when a participant who left did not come back in time, or
        when ``previous`` (whose track we had) has left for good (unless ``follow``)."""
        loop = asyncio.get_running_loop()
        wait = self.wait if wait is None else wait
        deadline = loop.time() + wait if wait else None
        hint_at = loop.time() + HINT_AFTER  # a typo would otherwise wait forever without a clue
        told = False
        while True:
            self._changed.clear()
            if self.connection.lost:
                raise self.connection.lost
            if previous is not None and not self.follow and self._gone(room, previous):
                return None
            found = self._find(room)
            if found is not None:
                participant, publication = found
                if publication.track is not None and publication.subscribed:
                    return found
                if not publication.subscribed:
                    publication.set_subscribed(True)
            elif not told:
                # after a track ended, say so: a bare "waiting for" after "receiving" reads as out of order
                again = f"{self._last} ended; " if received and self._last else ""
                self._notify(f"{again}waiting for {self.selector} in room {room.name}")
                told = True
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                if received:
                    self._notify(f"{self.selector} did not come back within {wait:g} s")
                    return None
                raise MediaError(
                    f"{self.selector} did not appear in room {room.name} within {wait:g} s"
                    f" ({who_is_in(room)})"
                )
            if hint_at is not None:
                if loop.time() >= hint_at:
                    self._notify(f"still waiting for {self.selector}: {self.who_is_there()}")
                    hint_at = None
                else:
                    timeout = min(timeout if timeout is not None else HINT_AFTER, hint_at - loop.time())
            await wait_event(self._changed, timeout)

    @staticmethod
    def _current(room, participant, publication, track) -> bool:
        """Is ``track`` still the one to read: not unpublished or replaced, its owner still here?"""
        return (
            publication.track is track
            and participant.track_publications.get(publication.sid) is publication
            and room.remote_participants.get(participant.identity) is participant
        )

    async def _receive(self, room, participant, publication):
        """The SDK's frame events until the track goes away (unpublished, participant left,
        reconnect), then those it had received before that and not yet handed on. Checked whenever
        no frame is waiting: a remote track plays silence until it is torn down."""
        from livekit import rtc

        track = publication.track
        watch = None
        if self.selector.kind == "audio":
            stream = rtc.AudioStream(
                track, sample_rate=self.rate, num_channels=self.channels, frame_size_ms=self.frame_ms
            )
            watch = Concealment(track, lambda: self.received, self.frame_ms / 1000)
        else:
            buffer_type = getattr(rtc.VideoBufferType, SDK_PIXEL_FORMATS[self.pixel_format])
            stream = rtc.VideoStream(track, format=buffer_type)
        frames = aiter(stream)
        next_frame = None
        gone = False  # the track went away: only what the SDK holds already is still to come
        try:
            while True:
                next_frame = asyncio.ensure_future(anext(frames))
                if gone:
                    # what was received before the track went away (a chain slower than real time
                    # leaves it queued) goes through the chain: a frame queued is taken in one step
                    await asyncio.sleep(0)
                while not next_frame.done() and not gone:
                    # cleared, then looked at, then waited for: a change signalled while a frame was
                    # being handed on is seen here (looking only after a wake-up lost the session's
                    # end when a frame came in the same step: frames stopped, and the run waited for
                    # them for ever; or silence went on being recorded until -t, exit 0)
                    self._changed.clear()
                    if self.connection.lost or not self._current(room, participant, publication, track):
                        gone = True  # unsubscribed, replaced or disconnected: subscribe again, or end
                        await asyncio.sleep(0)
                        break
                    await wait_either(next_frame, self._changed)
                if not next_frame.done():
                    return  # gone, and nothing more queued
                try:
                    event = next_frame.result()
                except (StopAsyncIteration, asyncio.CancelledError):
                    return
                yield event
        finally:
            if next_frame is not None and not next_frame.done():
                next_frame.cancel()  # stopped while waiting for a frame
            if watch is not None:
                self.concealed = bounded(self.concealed + await watch.stop())
            await stream.aclose()

    def who_is_there(self) -> str:
        """For a hint to someone waiting: who is in the room and what they publish (or that lkplug
        itself is reconnecting)."""
        if self.connection.reconnecting:
            return "lkplug is reconnecting to the server"
        room = self.connection.room
        return who_is_in(room) if room is not None else "not in the room yet"

    def warnings_at(self, offset: float) -> list[str]:
        """The warnings, their times shifted by ``offset`` seconds (where a mix placed this stream)."""
        return [describe(self.concealed, offset)] if self.concealed else []

    @property
    def warnings(self) -> list[str]:
        return [f"{self.selector}: {line}" for line in self.warnings_at(0.0)]

    async def aclose(self) -> None:
        self.ended = True
        if self._joined:
            self._joined = False
            await self.connection.release()


def who_is_in(room) -> str:
    """Who is in the room and what they publish, for someone waiting for a participant who is not."""
    people = []
    for participant in room.remote_participants.values():
        tracks = [
            f"{source_word(p.source)}"
            + (f" {p.name!r}" if p.name and p.name != source_word(p.source) else "")
            for p in participant.track_publications.values()
        ]
        people.append(f"{participant.identity} ({', '.join(tracks) or 'publishes nothing'})")
    return f"in room {room.name}: " + ("; ".join(people) if people else "nobody else")


def audio_frame(audio, timestamp: int) -> AudioFrame:
    samples = np.frombuffer(audio.data, dtype=np.int16).reshape(-1, audio.num_channels)
    return AudioFrame(samples.copy(), audio.sample_rate, timestamp)  # copied: the SDK owns its buffer


def video_frame(video, pixel_format: str, time: float) -> VideoFrame:
    """A picture of the SDK, converted to ``pixel_format``, in FFmpeg's layout (planes one after
    another for yuv420p and nv12)."""
    width, height = video.width, video.height
    if width % 2 or height % 2:
        raise MediaError(f"a {width}x{height} video track: odd picture sizes are not supported")
    shape = video_shape(pixel_format, width, height)
    data = np.frombuffer(video.data, np.uint8)[: int(np.prod(shape))]
    return VideoFrame(data.reshape(shape).copy(), pixel_format, width, height, time)
