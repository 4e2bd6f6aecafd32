"""Forwarding encoded media, as an SFU does: what a publisher sends reaches each subscriber as the
same encoded frames, never decoded or encoded again in the server.

aiortc's receiver reassembles a track's RTP packets into encoded frames and hands them to its decoder
thread through a queue; ``forward_receiver`` replaces that queue, so the frames go to a ``Fanout``
instead and nothing is decoded. Each subscription is an ``Outlet`` of the fanout: a track whose
``recv`` gives ``av.Packet``\\ s, which aiortc's ``RTCRtpSender`` packetizes as they are (its
encoder's ``pack``) instead of encoding. A subscriber's picture-loss report (PLI/FIR) goes to the
publisher, as LiveKit's server passes it on. Memory per subscriber is its peer connection and a
bounded queue; the server holds no codec state at all.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time

from aiortc import MediaStreamTrack
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from av import Packet

log = logging.getLogger("lkplug.devserver")
QUEUED = {"audio": 25, "video": 15}  # encoded frames an outlet holds (0.5 s of Opus, 1 s at 15 fps)
KEYFRAME_INTERVAL = 0.5  # seconds between two keyframe requests to a publisher (a request may be lost)


def vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 9.1: bit 0 of a VP8 frame's first byte is 0 for a keyframe."""
    return bool(data) and not data[0] & 1


class Fanout:
    """A published track's encoded frames, to every subscriber's ``Outlet``. ``kind``: "audio" or
    "video"; ``mime_type``: its codec, e.g. "video/vp8" (what subscriptions offer);
    ``ask_keyframe()``: asks the publisher for a keyframe (video), rate-limited here."""

    def __init__(self, kind: str, mime_type: str, ask_keyframe=lambda: None):
        self.kind, self.mime_type = kind, mime_type
        self.outlets: set[Outlet] = set()
        self._ask_keyframe, self._asked = ask_keyframe, 0.0
        self.subscribed = asyncio.Event()  # set while there is an outlet (a publisher may idle without)

    def outlet(self) -> Outlet:
        """A new subscriber's track (video starts at the next keyframe, which this asks for)."""
        outlet = Outlet(self)
        self.outlets.add(outlet)
        self.subscribed.set()
        self.ask_keyframe(force=True)
        return outlet

    def remove(self, outlet: Outlet) -> None:
        self.outlets.discard(outlet)
        if not self.outlets:
            self.subscribed.clear()

    def ask_keyframe(self, force: bool = False) -> None:
        if self.kind != "video":
            return
        now = time.monotonic()
        if force or now - self._asked > KEYFRAME_INTERVAL:
            self._asked = now
            self._ask_keyframe()

    def push(self, packet: Packet, keyframe: bool) -> None:
        """One encoded frame (``pts`` in ``time_base``, the RTP clock) to every subscriber."""
        for outlet in list(self.outlets):
            outlet.put(packet, keyframe)


class Outlet(MediaStreamTrack):
    """One subscriber's copy of a published track, for an ``RTCRtpSender``: ``recv`` gives encoded
    frames (``av.Packet``). At most ``QUEUED[kind]`` wait: audio drops the oldest; video that falls
    behind drops what it holds and resumes at a keyframe (a decoder cannot skip an interframe). Until
    the sender first reads (the subscriber's answer is in), audio keeps only the newest frame: held
    longer, it would reach the subscriber as one burst that its jitter buffer keeps as delay for
    seconds (240 ms measured against 40-70 ms for a track subscribed without a burst), so streams of
    one room would reach it with different delays. LiveKit's server forwards in real time too."""

    def __init__(self, fanout: Fanout):
        super().__init__()
        self.kind, self.fanout = fanout.kind, fanout
        self.queue: asyncio.Queue = asyncio.Queue(QUEUED[fanout.kind])
        self.need_keyframe = fanout.kind == "video"
        self.reading = False  # the sender has asked for a frame

    def put(self, packet: Packet, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self.kind == "audio" and not self.reading:
            while not self.queue.empty():
                self.queue.get_nowait()
        if self.queue.full():
            if self.kind == "audio":
                self.queue.get_nowait()
            else:
                while not self.queue.empty():
                    self.queue.get_nowait()
                self.need_keyframe = True
        if self.need_keyframe:
            if not keyframe:
                self.fanout.ask_keyframe()
                return
            self.need_keyframe = False
        self.queue.put_nowait(packet)

    async def recv(self) -> Packet:
        if self.readyState != "live":
            raise MediaStreamError
        self.reading = True
        return await self.queue.get()

    def stop(self) -> None:
        super().stop()
        self.fanout.remove(self)


def forward_to(sender, outlet: Outlet) -> None:
    """A subscriber's PLI/FIR on ``sender`` asks the publisher for a keyframe (aiortc's sender would
    only flag its own encoder, which forwarded frames never go through)."""
    sender._send_keyframe = outlet.fanout.ask_keyframe


class ForwardGate(queue.Queue):
    """What aiortc's receiver hands its decoder thread instead of its queue: each encoded frame
    (``(codec, JitterFrame)``, on the event loop's thread) goes to the fanout as an ``av.Packet``
    and nothing reaches the decoder; ``None`` (stop the decoder thread) passes."""

    def __init__(self, fanout: Fanout):
        super().__init__()
        self.fanout = fanout
        self.other_codec = None  # a codec the publisher sent that subscribers were not offered

    def put(self, item, block=True, timeout=None) -> None:
        if item is None:
            super().put(None)
            return
        if not self.fanout.outlets:
            return
        codec, frame = item
        if not frame.data:  # padding only: nothing a decoder could use
            return
        if codec.mimeType.lower() != self.fanout.mime_type.lower():
            if self.other_codec != codec.mimeType:  # said once: no subscriber could decode these
                self.other_codec = codec.mimeType
                log.warning(
                    "a publisher sends %s where %s was announced", codec.mimeType, self.fanout.mime_type
                )
            return
        packet = Packet(frame.data)
        packet.pts, packet.time_base = frame.timestamp, fractions.Fraction(1, codec.clockRate)
        keyframe = self.fanout.kind == "audio" or (codec.name == "VP8" and vp8_keyframe(frame.data))
        self.fanout.push(packet, keyframe)


class PromptJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer releases a frame when the next one begins to arrive (video: a frame
    period late) and holds audio for 4 packets more (80 ms), which a decoder may want and a forwarder
    does not. This one releases an audio packet at once (skipping a gap: the subscriber conceals it)
    and a video frame as soon as its last packet (the RTP marker bit) is in; otherwise as aiortc's."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        # padding (no payload: libwebrtc's bandwidth probes, with the last frame's timestamp) at the
        # head is no frame; aiortc's buffer hid it in the frame before, which this one has released
        while (head := self._packets[self._origin % self.capacity]) is not None and not head._data:
            self.remove(1)
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                if self._is_video or packets:
                    break
                continue  # audio: a packet missing before this one is not waited for
            if packets and packet.timestamp != packets[0].timestamp:
                break
            if not packet._data and not self._is_video:
                continue  # audio padding after a gap
            packets.append(packet)
            if not self._is_video or packet.marker:
                self.remove(count + 1)
                return JitterFrame(b"".join(p._data for p in packets), packets[0].timestamp)
        return super()._remove_frame(sequence_number)


def forward_receiver(receiver, fanout: Fanout) -> None:
    """Send what ``receiver`` receives to ``fanout``, encoded, instead of to its decoder, each frame as
    soon as it is complete. aiortc has no option for either: its decoder queue and jitter buffer are
    private attributes, replaced before ``receive()`` starts the decoder thread (checked, so a new
    aiortc that renames them fails here rather than decoding)."""
    queue_name, buffer_name = "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, queue_name) or not isinstance(
        getattr(receiver, buffer_name, None), JitterBuffer
    ):
        raise RuntimeError("this aiortc version has no decoder queue and jitter buffer to replace")
    old = getattr(receiver, buffer_name)
    setattr(receiver, buffer_name, PromptJitterBuffer(old.capacity, is_video=old._is_video))
    setattr(receiver, queue_name, ForwardGate(fanout))
