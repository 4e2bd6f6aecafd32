"""A small LiveKit-protocol server for tests and demos: signalling over a WebSocket (protobuf
``SignalRequest``/``SignalResponse``), media and data through aiortc peer connections.

Media is forwarded as an SFU forwards it: the encoded frames a publisher sends reach every subscriber as
they are, never decoded or encoded in the server (``forward.py``); a subscriber's keyframe request goes
to the publisher. There is one room per name, no simulcast. Nothing is held for a track nobody
subscribes to, and every queue is bounded, so memory stays flat however long it runs and whatever is
published. Grants are enforced as LiveKit's server does.
A participant whose signalling drops is kept for ``departure_timeout`` seconds and may resume. It
listens on 127.0.0.1 only and gathers only loopback ICE candidates; no STUN or TURN server is ever
contacted.

LiveKit Agents workers register at ``/agent`` and get jobs for its rooms (``agents.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp
from google.protobuf import json_format
from livekit import api
from livekit.protocol import models, rtc
from livekit.protocol import room as room_proto

from .. import video_kbps
from .agents import AgentService
from .forward import Fanout, forward_receiver, forward_to
from .page import add_page

log = logging.getLogger("lkplug.devserver")

PING_INTERVAL, PING_TIMEOUT = 10, 30  # seconds, sent to clients in the join response
SERVER_VERSION = "1.9.0"  # what we tell clients; the features we speak are those of that server
DEPARTURE_TIMEOUT = 20.0  # seconds a participant whose signalling dropped is kept (LiveKit's default)
# canPublishSources in a token names sources in lower case (TrackSource enum names otherwise)
SOURCE_NAMES = {
    models.TrackSource.CAMERA: "camera",
    models.TrackSource.MICROPHONE: "microphone",
    models.TrackSource.SCREEN_SHARE: "screen_share",
    models.TrackSource.SCREEN_SHARE_AUDIO: "screen_share_audio",
}


def make_sid(prefix: str) -> str:
    """LiveKit ids: a type prefix (clients parse it strictly) and 12 random characters."""
    return prefix + secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


def make_token(api_key: str, api_secret: str, identity: str, room: str = "test", **grants) -> str:
    """A token for ``identity`` in ``room``; grants default to join, publish and subscribe."""
    video = api.VideoGrants(room_join=True, room=room, **grants)
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(video)
        .to_jwt()
    )


def loopback_only() -> None:
    """aiortc (through aioice) gathers a candidate per host address; keep only 127.0.0.1 so nothing is
    ever sent off the machine. The SDK's own candidates (its host addresses) reach us through the
    kernel's local routing."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def new_peer_connection() -> RTCPeerConnection:
    """No ICE servers (aiortc would otherwise ask a public STUN server); one transport for everything,
    as LiveKit clients bundle every m-line (aiortc's default bundles per media kind)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def check_host_addresses() -> None:
    """libwebrtc gathers no loopback candidates: with only ``lo`` the SDK has nothing to offer."""
    import ifaddr

    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4 and not ip.ip.startswith("127."):
                return
    raise RuntimeError(
        "this host has no network interface besides loopback; the LiveKit SDK (libwebrtc) offers only "
        "host-interface ICE candidates, so it could not reach the dev server. Add one, e.g. "
        "`ip link add dummy0 type dummy && ip addr add 192.0.2.2/24 dev dummy0 && ip link set dummy0 up`"
    )


@dataclass
class Track:
    info: models.TrackInfo
    owner: Participant
    fanout: Fanout | None = None  # its encoded frames to the subscribers, once its media arrives
    receiver: object = None  # its RTCRtpReceiver (for keyframe requests)
    subscribers: set = field(default_factory=set)  # identities with a sender for this track


@dataclass(eq=False)
class Participant:
    identity: str
    name: str
    sid: str
    ws: web.WebSocketResponse
    auto_subscribe: bool
    grants: object
    kind: str = ""  # the token's participant kind: "agent" for an Agents job's participant
    joined_at: int = field(default_factory=lambda: int(time.time()))
    publisher: RTCPeerConnection | None = None
    subscriber: RTCPeerConnection | None = None
    channels: dict = field(default_factory=dict)  # "_reliable"/"_lossy" on the subscriber PC
    pending: dict = field(default_factory=dict)  # cid -> TrackInfo announced by add_track
    tracks: dict = field(default_factory=dict)  # sid -> Track
    senders: dict = field(default_factory=dict)  # track sid -> RTCRtpSender on our subscriber PC
    changes: dict = field(default_factory=dict)  # track sid -> Track to add, None to remove, next offer
    candidates: dict = field(default_factory=lambda: {0: [], 1: []})  # queued until a description is set
    offered: dict = field(default_factory=dict)  # the publisher's last offer: mid -> (direction, port, cid)
    offer_id: int = 0  # of our last offer on the subscriber PC (clients echo it in their answer)
    need_offer: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list = field(default_factory=list)
    gone: bool = False
    reason: int = 0  # the DisconnectReason of its departure, once gone
    departure: asyncio.TimerHandle | None = None  # removal, while the signalling is down

    def peer_closed(self) -> bool:
        """The client closed a peer connection of this session: aiortc closes our end when the DTLS
        close arrives, which can come before the leave that follows it, or the answer sent just before."""
        return any(
            pc is not None and pc.signalingState == "closed" for pc in (self.publisher, self.subscriber)
        )

    def can_publish_source(self, source: int) -> bool:
        """LiveKit's rule: canPublish, and the source among canPublishSources when the token lists any."""
        if self.grants.can_publish is False:
            return False
        allowed = self.grants.can_publish_sources
        return not allowed or SOURCE_NAMES.get(source, "unknown") in allowed

    def info(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=models.ParticipantInfo.State.DISCONNECTED if self.gone else models.ParticipantInfo.ACTIVE,
            tracks=[t.info for t in self.tracks.values()],
            joined_at=self.joined_at,
            disconnect_reason=self.reason,
            is_publisher=bool(self.tracks),
            kind=models.ParticipantInfo.Kind.AGENT
            if self.kind == "agent"
            else models.ParticipantInfo.STANDARD,
            permission=models.ParticipantPermission(
                can_subscribe=self.grants.can_subscribe is not False,
                can_publish=self.grants.can_publish is not False,
                can_publish_data=self.grants.can_publish_data is not False,
            ),
        )

    async def send(self, **message) -> None:
        if self.ws is not None and not self.ws.closed:  # None: the demo participant, in the server
            try:
                await self.ws.send_bytes(rtc.SignalResponse(**message).SerializeToString())
            except ConnectionError:
                pass  # the socket went away; its reader cleans up


class Room:
    def __init__(self, name: str, departure_timeout: float = DEPARTURE_TIMEOUT):
        self.name = name
        self.departure_timeout = departure_timeout
        self.sid = make_sid("RM_")
        self.participants: dict[str, Participant] = {}
        self.published: set[str] = set()  # identities that published here (their publisher job ran)

    def info(self) -> models.Room:
        return models.Room(
            sid=self.sid,
            name=self.name,
            num_participants=len(self.participants),
            creation_time=int(time.time()),
            departure_timeout=round(self.departure_timeout),
        )

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def find_track(self, sid: str) -> Track | None:
        return next((p.tracks[sid] for p in self.participants.values() if sid in p.tracks), None)

    async def broadcast_update(self, changed: Participant) -> None:
        update = rtc.ParticipantUpdate(participants=[changed.info()])
        for other in self.others(changed):
            await other.send(update=update)


class DevServer:
    """``await DevServer().start()``; then ``url``, ``api_key``, ``api_secret`` and ``token()``.

    ``departure_timeout``: seconds a participant whose signalling dropped is kept and may resume its
    session (LiveKit's default, 20 s); after that it has left the room. ``ping_timeout``: seconds
    without a message from a client after which its signalling counts as dropped (LiveKit's 30 s;
    clients ping every ``ping_timeout / 3`` at most 10 s)."""

    def __init__(
        self,
        port: int = 0,
        api_key: str = "devkey",
        api_secret: str = "secret" * 6,
        departure_timeout: float = DEPARTURE_TIMEOUT,
        ping_timeout: float = PING_TIMEOUT,
    ):
        self.port = port
        self.api_key, self.api_secret = api_key, api_secret
        self.departure_timeout, self.ping_timeout = departure_timeout, ping_timeout
        self.rooms: dict[str, Room] = {}
        self.demos: list[tuple[str, str]] = []  # (room, identity) of demo participants
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.agents = AgentService(self)  # Agents workers and dispatch (agents.py)
        self.version, self.protocol = SERVER_VERSION, 16

    @staticmethod
    def new_sid(prefix: str) -> str:
        return make_sid(prefix)

    def room(self, name: str, config=None) -> Room:
        """The room ``name``, created (with the agent dispatches of ``config``, a token's
        RoomConfiguration) if it does not exist yet."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.departure_timeout)
            self.agents.room_created(room, config)
        return room

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, identity: str, room: str = "test", **grants) -> str:
        return make_token(self.api_key, self.api_secret, identity, room, **grants)

    async def start(self) -> DevServer:
        check_host_addresses()
        loopback_only()
        app = web.Application(middlewares=[cors])
        # newer clients try the single-peer-connection path first; its validate answering 404 is how
        # livekit-client (2.x) learns to fall back to /rtc (a server older than /rtc/v1)
        app.router.add_get("/rtc/v1", self._not_here)
        app.router.add_get("/rtc", self._signal)
        app.router.add_get("/rtc/validate", self._validate)
        app.router.add_get("/rtc/v1/validate", self._not_here)
        # the part of LiveKit's server API that tests need (livekit-api's RoomService)
        app.router.add_post("/twirp/livekit.RoomService/RemoveParticipant", self._remove_participant)
        # fault injection for tests, for holders of a room_admin token of the room concerned
        app.router.add_post("/devserver/drop_signal/{identity}", self._admin_drop_signal)
        app.router.add_post("/devserver/restart", self._admin_restart)
        self.agents.add_routes(app)  # /agent (workers) and the AgentDispatchService API
        add_page(app)  # a page for people at / (page.py)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        if self.port:  # a port given, or ours before a restart
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        else:  # any free port, held from the moment it is chosen (a port probed, closed and bound
            # again later can be taken in between by another process: "address already in use")
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            self.port = listener.getsockname()[1]
            site = web.SockSite(self._runner, listener)
        await site.start()
        for room, identity in self.demos:  # back after a restart
            self._add_demo(room, identity)
        return self

    def add_demo(self, room: str = "demo", identity: str = "alice") -> None:
        """A participant inside the server publishing a 440 Hz tone and colour bars (``demo.py``)."""
        self.demos.append((room, identity))
        if self._runner is not None:
            self._add_demo(room, identity)

    def _add_demo(self, room_name: str, identity: str) -> None:
        from .demo import demo_tracks

        room = self.room(room_name)
        grants = api.VideoGrants(room_join=True, room=room_name, can_subscribe=False, can_publish_data=False)
        participant = Participant(identity, identity, make_sid("PA_"), None, False, grants)
        for info, playout in demo_tracks():
            info.sid = make_sid("TR_")
            participant.tracks[info.sid] = Track(info, participant, playout.fanout)
            participant.tasks.append(asyncio.ensure_future(playout.run()))
        room.participants[identity] = participant
        log.info("%s (demo) publishes a tone and colour bars in room %s", identity, room_name)
        room.published.add(identity)
        self.agents.participant_published(room, participant)

    async def stop(self) -> None:
        await self.agents.stop()
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                await self._remove(room, participant)  # no reason: they may be back (a restart)
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        """Fault injection: every client loses its connection and every session (a restarted server
        keeps nothing), then the server is back on the same port."""
        await self.stop()
        self.rooms.clear()
        await self.start()

    async def drop_signal(self, identity: str, room: str = "test") -> None:
        """Fault injection: close a participant's signalling socket, as a network failure would."""
        participant = self.rooms[room].participants.get(identity) if room in self.rooms else None
        if participant is None or participant.ws is None:
            raise KeyError(identity)
        await participant.ws.close()

    # HTTP ------------------------------------------------------------------------------------

    async def _not_here(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")

    def _verified(self, request: web.Request):
        """The claims of the request's token (``Authorization: Bearer`` or ``access_token``), or None."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.query.get("access_token", "")
        try:
            return api.TokenVerifier(self.api_key, self.api_secret).verify(token)
        except Exception:
            return None

    def _claims(self, request: web.Request):
        claims = self._verified(request)
        if claims is None or not (claims.video and claims.video.room_join and claims.video.room):
            return None
        return claims if claims.identity else None

    def _denied(self, request: web.Request, rooms) -> web.Response | None:
        """LiveKit's admin check (``EnsureAdminPermission``): room_admin, for the very room. Its
        refusal, as the real server's Twirp API sends it: 401, unauthenticated, permissions denied."""
        claims = self._verified(request)
        video = claims.video if claims is not None else None
        if video is None or not video.room_admin or any(room != video.room for room in rooms):
            return twirp_error(401, "unauthenticated", "permissions denied")
        return None

    async def _remove_participant(self, request: web.Request) -> web.Response:
        """RoomService.RemoveParticipant (protobuf or JSON, as livekit-api sends it)."""
        body = room_proto.RoomParticipantIdentity()
        data = await request.read()
        try:
            if request.content_type == "application/json":
                json_format.Parse(data.decode(), body)
            else:
                body.ParseFromString(data)
        except Exception:
            return twirp_error(400, "malformed", "the request body could not be decoded")
        denied = self._denied(request, [body.room])
        if denied is not None:
            return denied
        room = self.rooms.get(body.room)
        participant = room.participants.get(body.identity) if room is not None else None
        if participant is None:
            return twirp_error(404, "not_found", "participant does not exist")
        leave = rtc.LeaveRequest(
            reason=models.DisconnectReason.PARTICIPANT_REMOVED, action=rtc.LeaveRequest.DISCONNECT
        )
        await participant.send(leave=leave)
        await self._remove(room, participant, models.DisconnectReason.PARTICIPANT_REMOVED)
        if participant.ws is not None:
            await participant.ws.close()
        done = room_proto.RemoveParticipantResponse().SerializeToString()
        return web.Response(body=done, content_type="application/protobuf")

    async def _admin_drop_signal(self, request: web.Request) -> web.Response:
        room = request.query.get("room", "test")
        denied = self._denied(request, [room])
        if denied is not None:
            return denied
        try:
            await self.drop_signal(request.match_info["identity"], room)
        except KeyError:
            return twirp_error(404, "not_found", "participant does not exist")
        return web.Response(text="dropped")

    async def _admin_restart(self, request: web.Request) -> web.Response:
        # a restart ends every room's sessions: it needs room_admin of each room in use
        denied = self._denied(request, [name for name, room in self.rooms.items() if room.participants])
        if denied is not None:
            return denied
        # answer first: the restart closes this very connection
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self.restart()))
        return web.Response(text="restarting")

    async def _validate(self, request: web.Request) -> web.Response:
        if self._claims(request) is None:
            return web.Response(status=401, text="invalid token")
        return web.Response(text="success")

    async def _signal(self, request: web.Request) -> web.StreamResponse:
        claims = self._claims(request)
        if claims is None:
            return web.Response(status=401, text="invalid token")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            if request.query.get("reconnect") == "1":
                room = self.rooms.get(claims.video.room)
                participant = room and room.participants.get(claims.identity)
                if participant is None or participant.sid != request.query.get("sid"):
                    # a session we do not have (e.g. after a restart): join again from scratch
                    leave = rtc.LeaveRequest(can_reconnect=True, action=rtc.LeaveRequest.RECONNECT)
                    await ws.send_bytes(rtc.SignalResponse(leave=leave).SerializeToString())
                    return ws
                await self._resume(room, participant, ws)
            else:
                room = self.room(claims.video.room, claims.room_config)
                auto_subscribe = request.query.get("auto_subscribe", "1") not in ("0", "false")
                participant = await self._join(room, claims, ws, auto_subscribe)
            await self._serve_signal(room, participant, ws)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _serve_signal(self, room: Room, participant: Participant, ws) -> None:
        try:
            while True:
                try:  # a client pings every ping_interval: silence this long is a lost connection
                    message = await ws.receive(timeout=self.ping_timeout)
                except asyncio.TimeoutError:
                    log.info("%s: no ping for %g s", participant.identity, self.ping_timeout)
                    await ws.close()
                    break
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                if message.type == WSMsgType.BINARY:
                    request_message = rtc.SignalRequest()
                    request_message.ParseFromString(message.data)
                    if participant.gone:  # left, replaced, removed, a restart: nothing may act for it now
                        log.info("%s: a request after its session ended, dropped", participant.identity)
                        continue
                    try:
                        await self._handle(room, participant, request_message)
                    except Exception:  # one bad request must not end the session
                        if participant.gone or participant.peer_closed():  # it ended meanwhile
                            log.info("%s: a request cut short by its session's end", participant.identity)
                        else:
                            log.exception("%s: failed to handle %s", participant.identity, request_message)
        finally:
            if participant.ws is ws and not participant.gone:
                self._depart(room, participant)

    # joining, leaving and resuming -------------------------------------------------------------

    async def _join(self, room: Room, claims, ws, auto_subscribe: bool) -> Participant:
        old = room.participants.get(claims.identity)
        if old is not None:  # the same identity joins again: replace it, and tell the one replaced
            # why (as LiveKit does), or its SDK takes the closed socket for a network failure and
            # joins again, replacing the newcomer in turn
            leave = rtc.LeaveRequest(
                can_reconnect=False,
                reason=models.DisconnectReason.DUPLICATE_IDENTITY,
                action=rtc.LeaveRequest.DISCONNECT,
            )
            await old.send(leave=leave)
            await self._remove(room, old, models.DisconnectReason.DUPLICATE_IDENTITY)
            if old.ws is not None:
                await old.ws.close()
        participant = Participant(
            claims.identity,
            claims.name or claims.identity,
            make_sid("PA_"),
            ws,
            auto_subscribe,
            claims.video,
            kind=claims.kind or "",
        )
        room.participants[participant.identity] = participant
        log.info("%s joined room %s", participant.identity, room.name)
        join = rtc.JoinResponse(
            room=room.info(),
            participant=participant.info(),
            other_participants=[p.info() for p in room.others(participant)],
            server_version=SERVER_VERSION,
            subscriber_primary=True,
            fast_publish=False,
            ping_interval=max(1, min(PING_INTERVAL, round(self.ping_timeout / 3))),  # whole seconds
            ping_timeout=max(1, round(self.ping_timeout)),
        )
        await participant.send(join=join)
        await room.broadcast_update(participant)
        await self._open_subscriber(room, participant)
        self.agents.participant_joined(room, participant)
        return participant

    def _depart(self, room: Room, participant: Participant) -> None:
        """The signalling dropped without a leave: keep the participant (and its media) for
        ``departure_timeout`` seconds, as LiveKit does, so that it can resume."""
        log.info("%s: signalling lost, kept %g s for a resume", participant.identity, self.departure_timeout)
        participant.departure = asyncio.get_running_loop().call_later(
            self.departure_timeout,
            lambda: asyncio.ensure_future(
                self._remove(room, participant, models.DisconnectReason.SIGNAL_CLOSE)
            ),
        )

    async def _resume(self, room: Room, participant: Participant, ws) -> None:
        """The SDK's resume: a new signalling socket for the same session (``reconnect=1&sid=``).
        The peer connections were kept; the client re-offers its publisher with an ICE restart."""
        if participant.departure is not None:
            participant.departure.cancel()
            participant.departure = None
        old, participant.ws = participant.ws, ws
        if old is not None and old is not ws:
            await old.close()
        log.info("%s resumed its session in room %s", participant.identity, room.name)
        await participant.send(reconnect=rtc.ReconnectResponse())
        # as LiveKit's server: the room as it is now (the SDK drops whom this does not list)
        others = [p.info() for p in room.others(participant)]
        await participant.send(update=rtc.ParticipantUpdate(participants=others))
        pc = participant.subscriber
        if pc is not None and pc.localDescription is not None and not participant.answered.is_set():
            # the offer in flight when the socket dropped was lost with it: send it again
            offer = rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp, id=participant.offer_id)
            await participant.send(offer=offer)

    async def _remove(self, room: Room, participant: Participant, reason: int = 0) -> None:
        """``reason``: a ``DisconnectReason``, told to the others with the participant's departure (the
        SDKs tell a leave, CLIENT_INITIATED, from a replacement, DUPLICATE_IDENTITY, by it)."""
        if participant.gone:
            return
        participant.gone = True
        participant.reason = reason
        if participant.departure is not None:
            participant.departure.cancel()
            participant.departure = None
        if room.participants.get(participant.identity) is participant:
            del room.participants[participant.identity]
        log.info("%s left room %s", participant.identity, room.name)
        self.agents.participant_left(room, participant)
        for sid in list(participant.tracks):
            await self._unpublish(room, participant, sid, tell_owner=False)
        for other in room.participants.values():
            for track in other.tracks.values():
                track.subscribers.discard(participant)
        await room.broadcast_update(participant)
        for task in participant.tasks:
            task.cancel()
        for pc in (participant.publisher, participant.subscriber):
            if pc is not None:
                await pc.close()
        if not room.participants and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self.agents.room_closed(room)

    # the subscriber peer connection (we offer) -------------------------------------------------

    async def _open_subscriber(self, room: Room, participant: Participant) -> None:
        pc = participant.subscriber = new_peer_connection()

        @pc.on("connectionstatechange")
        def _state():
            log.debug("%s subscriber PC %s", participant.identity, pc.connectionState)
            if pc.connectionState == "connected":
                participant.connected.set()
            else:
                participant.connected.clear()

        # the first offer carries the data channels only; tracks come in later offers
        participant.channels = {
            "_reliable": pc.createDataChannel("_reliable", ordered=True),
            "_lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
        }
        await self._send_offer(participant)
        participant.tasks.append(asyncio.create_task(self._renegotiate(room, participant)))
        if participant.auto_subscribe:
            for other in room.others(participant):
                for track in other.tracks.values():
                    self._subscribe(room, participant, track)

    async def _send_offer(self, participant: Participant) -> None:
        pc = participant.subscriber
        participant.answered.clear()
        participant.offer_id += 1
        await pc.setLocalDescription(await pc.createOffer())
        offer = rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp, id=participant.offer_id)
        await participant.send(offer=offer)
        log.debug("offered %s: %s", participant.identity, pc.localDescription.sdp)

    async def _renegotiate(self, room: Room, participant: Participant) -> None:
        """One offer at a time, and none while the PC is still connecting: aiortc would leave the new
        transceivers out (or give them a transport of their own that never connects) and the
        subscriber would hear silence. Subscription changes wait here until the PC is ready."""
        while True:
            try:
                await self._offer_changes(room, participant)
            except Exception:  # one failed offer must not end this participant's subscriptions
                log.exception("%s: renegotiation failed", participant.identity)

    async def _offer_changes(self, room: Room, participant: Participant) -> None:
        await participant.need_offer.wait()
        await participant.answered.wait()
        await participant.connected.wait()
        participant.need_offer.clear()
        pc = participant.subscriber
        added = []
        retired = []
        # the whole batch is applied before the first await: a subscribe arriving while a sender
        # stops must find the subscription it undoes or makes, not a sid in neither table (it was
        # then made twice, and the new sender stopped by the next round)
        for sid, change in list(participant.changes.items()):
            del participant.changes[sid]
            sender = participant.senders.pop(sid, None)
            if sender is not None:
                retired.append(sender)
                track = room.find_track(sid)
                if track is not None:
                    track.subscribers.discard(participant)
            if change is not None and change.fanout is not None and sid in change.owner.tracks:
                media = change.fanout.outlet()
                media._id = sid  # the SDK reads the track sid from a=msid
                transceiver = pc.addTransceiver(media, direction="sendonly")
                # the codec the publisher sends is the one forwarded (and the only one offered)
                transceiver.setCodecPreferences(codec_preferences(media.kind, change.info.mime_type))
                sender = transceiver.sender
                forward_to(sender, media)
                sender._stream_id = f"{change.owner.sid}|{sid}"
                participant.senders[sid] = sender
                change.subscribers.add(participant)
                added.append(change)
                # logged as made, not as asked: requests that undo each other before the offer make
                # one (CI logged bob's one subscription twice, 2 ms apart: subscribe, unsubscribe, subscribe)
                log.info(
                    "%s subscribed to %s/%s", participant.identity, change.owner.identity, change.info.name
                )
        for sender in retired:
            await stop_sending(pc, sender)
        await self._send_offer(participant)
        await participant.answered.wait()
        # media flows from here on: tell each publisher (the SDK's local_track_subscribed)
        for track in added:
            await track.owner.send(track_subscribed=rtc.TrackSubscribed(track_sid=track.info.sid))

    def _subscribe(self, room: Room, participant: Participant, track: Track) -> None:
        # auto-subscribe and the SDK's own request both ask: one subscription (logged when the next
        # offer makes it). A removal still pending is undone by subscribing again
        sid = track.info.sid
        pending = participant.changes.get(sid, False)
        if participant.gone or pending is track or (sid in participant.senders and pending is False):
            return
        if participant.grants.can_subscribe is False:
            # LiveKit's server refuses quietly (and would retry if the grant changed): no media
            log.warning("%s may not subscribe to %s", participant.identity, track.info.sid)
            return
        participant.changes[track.info.sid] = track
        participant.need_offer.set()

    def _unsubscribe(self, participant: Participant, sid: str) -> None:
        if not participant.gone and (sid in participant.senders or sid in participant.changes):
            participant.changes[sid] = None
            participant.need_offer.set()

    # the publisher peer connection (the client offers) -----------------------------------------

    async def _on_publisher_offer(
        self, room: Room, participant: Participant, offer: rtc.SessionDescription
    ) -> None:
        """The answer carries the offer's id: livekit-client applies only the answer to its latest
        offer (and times a negotiation out without one). Clients that send no id get 0, as before."""
        sdp = offer.sdp
        pc = participant.publisher
        if pc is None:
            pc = participant.publisher = new_peer_connection()
            pc.on("datachannel", lambda channel: self._on_data_channel(room, participant, channel))
            pc.on("track", lambda media: self._on_track(room, participant, media))
        participant.offered = parse_media(sdp)  # read by _on_track, which fires inside the next line
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        follow_ice_restart(pc, sdp)
        await self._add_queued_candidates(participant, rtc.SignalTarget.PUBLISHER)
        await pc.setLocalDescription(await pc.createAnswer())
        sizes = {}  # mid -> published video size
        for mid, (_, _, cid) in participant.offered.items():
            info = participant.pending.get(cid) or next(
                (t.info for t in participant.tracks.values() if t.info.mid == mid), None
            )
            if info is not None and info.type == models.TrackType.VIDEO and info.width:
                sizes[mid] = (info.width, info.height)
        answer = video_bitrate_floor(pc.localDescription.sdp, sizes)
        # the offer's id echoed: the JS SDK matches answers to its offers by it
        await participant.send(answer=rtc.SessionDescription(type="answer", sdp=answer, id=offer.id))
        # a re-offer whose m-line no longer sends (recvonly, inactive or rejected) unpublishes a track
        for mid, (direction, port, _) in participant.offered.items():
            if direction in ("recvonly", "inactive") or port == 0:
                for sid, track in list(participant.tracks.items()):
                    if track.info.mid == mid:
                        await self._unpublish(room, participant, sid)

    def _on_track(self, room: Room, participant: Participant, media) -> None:
        pc = participant.publisher
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is media)
        cid = participant.offered.get(transceiver.mid, (None, None, None))[2]
        info = participant.pending.pop(cid, None)
        if info is None:
            log.warning("%s sent media for an unknown track (mid %s)", participant.identity, transceiver.mid)
            return
        info.mid = transceiver.mid
        track = Track(info, participant, None, transceiver.receiver)
        track.fanout = Fanout(media.kind, info.mime_type, lambda: request_keyframe(track))
        forward_receiver(transceiver.receiver, track.fanout)
        participant.tracks[info.sid] = track
        log.info("%s published %s (%s)", participant.identity, info.name, media.kind)
        # announce the track before offering it, so subscribers know whose it is when it arrives
        asyncio.ensure_future(self._announce(room, participant, track))
        if participant.identity not in room.published:  # the first publication: publisher jobs
            room.published.add(participant.identity)
            self.agents.participant_published(room, participant)

    async def _announce(self, room: Room, participant: Participant, track: Track) -> None:
        await room.broadcast_update(participant)
        for other in room.others(participant):
            if other.auto_subscribe:
                self._subscribe(room, other, track)

    async def _unpublish(self, room: Room, participant: Participant, sid: str, tell_owner=True) -> None:
        track = participant.tracks.pop(sid, None)
        if track is None:
            return
        log.info("%s unpublished %s", participant.identity, track.info.name)
        track.subscribers.clear()
        for other in room.others(participant):
            self._unsubscribe(other, sid)
        if tell_owner:
            await participant.send(track_unpublished=rtc.TrackUnpublishedResponse(track_sid=sid))
            await room.broadcast_update(participant)

    # data --------------------------------------------------------------------------------------

    def _on_data_channel(self, room: Room, participant: Participant, channel) -> None:
        @channel.on("message")
        def _forward(message):
            if not isinstance(message, bytes):
                return
            if participant.grants.can_publish_data is False:
                return  # as LiveKit's server: dropped without a word (the SDK is not told)
            packet = models.DataPacket()
            packet.ParseFromString(message)
            packet.participant_identity = participant.identity
            packet.participant_sid = participant.sid
            if packet.HasField("user"):
                packet.user.participant_identity = participant.identity
                packet.user.participant_sid = participant.sid
            wanted = set(packet.destination_identities) or set(packet.user.destination_identities)
            data = packet.SerializeToString()
            for other in room.others(participant):
                out = other.channels.get(channel.label)
                if out is not None and out.readyState == "open" and (not wanted or other.identity in wanted):
                    out.send(data)

    # signalling requests -----------------------------------------------------------------------

    async def _handle(self, room: Room, participant: Participant, request: rtc.SignalRequest) -> None:
        which = request.WhichOneof("message")
        if which == "offer":
            await self._on_publisher_offer(room, participant, request.offer)
        elif which == "answer":
            pc = participant.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=request.answer.sdp, type="answer"))
            await self._add_queued_candidates(participant, rtc.SignalTarget.SUBSCRIBER)
            participant.answered.set()
        elif which == "trickle":
            participant.candidates[request.trickle.target].append(request.trickle.candidateInit)
            await self._add_queued_candidates(participant, request.trickle.target)
        elif which == "add_track":
            await self._add_track(participant, request.add_track)
        elif which == "subscription":
            for sid in [*request.subscription.track_sids] + [
                s for pt in request.subscription.participant_tracks for s in pt.track_sids
            ]:
                track = room.find_track(sid)
                if request.subscription.subscribe and track is not None:
                    self._subscribe(room, participant, track)
                elif not request.subscription.subscribe:
                    self._unsubscribe(participant, sid)
        elif which == "mute":
            track = participant.tracks.get(request.mute.sid)
            if track is not None:
                track.info.muted = request.mute.muted
                await room.broadcast_update(participant)
        elif which == "leave":
            await self._remove(room, participant, models.DisconnectReason.CLIENT_INITIATED)
            await participant.ws.close()
        elif which == "ping_req":
            pong = rtc.Pong(last_ping_timestamp=request.ping_req.timestamp, timestamp=int(time.time() * 1000))
            await participant.send(pong_resp=pong)
        elif which == "ping":
            await participant.send(pong=int(time.time() * 1000))

    async def _add_track(self, participant: Participant, request: rtc.AddTrackRequest) -> None:
        if not participant.can_publish_source(request.source):
            # LiveKit's answer to a publish its grants do not allow
            log.warning("%s may not publish %s", participant.identity, request.name)
            refusal = rtc.RequestResponse(reason=rtc.RequestResponse.NOT_ALLOWED, add_track=request)
            await participant.send(request_response=refusal)
            return
        info = models.TrackInfo(
            sid=make_sid("TR_"),
            type=request.type,
            name=request.name,
            source=request.source,
            width=request.width,
            height=request.height,
            muted=request.muted,
            stereo=request.stereo,
            mime_type="audio/opus" if request.type == models.TrackType.AUDIO else "video/vp8",
        )
        participant.pending[request.cid] = info
        await participant.send(track_published=rtc.TrackPublishedResponse(cid=request.cid, track=info))

    async def _add_queued_candidates(self, participant: Participant, target: int) -> None:
        pc = participant.publisher if target == rtc.SignalTarget.PUBLISHER else participant.subscriber
        if pc is None or pc.remoteDescription is None:
            return  # kept until the matching offer/answer is applied
        queued, participant.candidates[target] = participant.candidates[target], []
        for text in queued:
            init = json.loads(text)
            line = init.get("candidate", "")
            if not line:
                continue
            candidate = candidate_from_sdp(line.split(":", 1)[1])
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            try:
                await pc.addIceCandidate(candidate)
            except Exception as exc:  # a candidate for a transport we do not have is harmless
                log.debug("ignored candidate %s: %s", line, exc)


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """CORS on every HTTP answer, as LiveKit's server sends it (any origin, any header: tokens, not
    origins, are what it trusts): a page on another origin (a browser app on its own dev server)
    reads /rtc/validate this way, and the SDK's fallback from /rtc/v1 to /rtc depends on it."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
        response = web.Response(status=204)  # a preflight: answered here, never by a handler
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, HEAD"
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            response.headers["Access-Control-Allow-Headers"] = asked
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404/405 need the headers as well
            if origin:
                exc.headers["Access-Control-Allow-Origin"] = origin
                exc.headers.add("Vary", "Origin")
            raise
    if origin and not response.prepared:  # a WebSocket's headers are sent already
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    return response


def twirp_error(status: int, code: str, message: str) -> web.Response:
    """An error of LiveKit's server API as Twirp encodes it (livekit-api raises it as ``TwirpError``)."""
    return web.json_response({"code": code, "msg": message}, status=status)


def codec_preferences(kind: str, mime_type: str) -> list:
    """aiortc's codecs of ``kind`` named by ``mime_type`` (e.g. "video/vp8"), with their retransmission
    codec: what a subscription offers, the codec its publisher sends."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    return chosen + [c for c in codecs if c.name.lower() == "rtx"] if chosen else codecs


def request_keyframe(track: Track) -> None:
    """A subscriber's video starts at a keyframe, and one whose picture is lost needs another: ask the
    publisher (a PLI)."""
    if track.info.type != models.TrackType.VIDEO or track.receiver is None:
        return
    for source in track.receiver.getSynchronizationSources():
        asyncio.ensure_future(track.receiver._send_rtcp_pli(source.source))


def follow_ice_restart(pc: RTCPeerConnection, sdp: str) -> None:
    """A resuming SDK re-offers its publisher with new ICE credentials (an ICE restart). aiortc does
    not restart ICE; the connection it has goes on working if it checks with the new credentials."""
    ufrag, pwd = re.search(r"a=ice-ufrag:(\S+)", sdp), re.search(r"a=ice-pwd:(\S+)", sdp)
    if ufrag is None or pwd is None:
        return
    transports = {t.receiver.transport.transport for t in pc.getTransceivers() if t.receiver.transport}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    for ice in transports:
        connection = ice._connection
        if connection.remote_username and connection.remote_username != ufrag.group(1):
            connection.remote_username, connection.remote_password = ufrag.group(1), pwd.group(1)


async def stop_sending(pc: RTCPeerConnection, sender) -> None:
    """Take a sender off the connection. aiortc has no ``removeTrack``: stop the sender (its RTP ends,
    the relayed track is released) and offer its m-line ``inactive`` next, which is what
    ``removeTrack`` does in a browser. aiortc does not reuse the m-line; a new subscription gets one.
    The dead m-line's msid is replaced by one that names nothing: aiortc would keep writing the track's,
    and a subscription to the same track again would put its msid on two m-lines, which the SDK
    cannot parse (it panics and aborts the whole process: "Duplicate a=msid lines detected")."""
    transceiver = next((t for t in pc.getTransceivers() if t.sender is sender), None)
    if transceiver is not None:
        transceiver.direction = "inactive"
        nothing = secrets.token_hex(6)
        sender._stream_id, sender._track_id = f"removed-{nothing}", f"removed-{nothing}"
    track = sender.track
    await sender.stop()
    if track is not None:
        track.stop()


def sdp_sections(sdp: str) -> list[list[str]]:
    """An SDP's lines: the session part, then one list per m-line."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def add_fmtp(section: list[str], codecs: tuple[str, ...], params: str) -> None:
    """Add ``params`` to the fmtp line of each payload of ``codecs`` in an m-line (or give it one)."""
    for line in list(section):
        if line.startswith("a=rtpmap:") and line.split()[1].split("/")[0].upper() in codecs:
            payload = line[9:].split()[0]
            fmtp = next((i for i, x in enumerate(section) if x.startswith(f"a=fmtp:{payload} ")), None)
            if fmtp is None:
                section.insert(section.index(line) + 1, f"a=fmtp:{payload} {params}")
            else:
                section[fmtp] += ";" + params


VIDEO_CODECS = ("VP8", "VP9", "H264", "AV1")


def video_bitrate_floor(sdp: str, sizes: dict[str, tuple[int, int]]) -> str:
    """An answer to a publisher, with a bitrate floor for the video of each m-line (``sizes``: mid ->
    the published width and height). aiortc's bandwidth estimate (REMB) stays near 100 kbit/s, and
    libwebrtc then sends 1280x720 as 640x360 (quality limitation: bandwidth); on 127.0.0.1 there is
    no reason to, and subscribers are to get the size that was published. libwebrtc reads
    ``x-google-min-bitrate`` and ``x-google-start-bitrate`` (kbit/s) from the remote fmtp lines:
    ``video_kbps`` of the size at 30 fps."""
    sections = sdp_sections(sdp)
    for section in sections[1:]:
        mid = next((x[6:].strip() for x in section if x.startswith("a=mid:")), None)
        if mid in sizes:
            kbps = video_kbps(*sizes[mid])
            add_fmtp(section, VIDEO_CODECS, f"x-google-min-bitrate={kbps};x-google-start-bitrate={kbps}")
    return "\r\n".join(line for section in sections for line in section) + "\r\n"


def parse_media(sdp: str) -> dict[str, tuple[str, int, str | None]]:
    """mid -> (direction, port, track id from a=msid) for each m-line of an SDP."""
    sections: dict[str, tuple[str, int, str | None]] = {}
    port, mid, direction, track_id = 0, None, "sendrecv", None

    def close():
        if mid is not None:
            sections[mid] = (direction, port, track_id)

    for line in sdp.splitlines():
        if line.startswith("m="):
            close()
            port, mid, direction, track_id = int(line.split()[1]), None, "sendrecv", None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.strip() in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            direction = line.strip()[2:]
        elif line.startswith("a=msid:"):
            parts = line[7:].split()
            track_id = parts[1] if len(parts) > 1 else None
    close()
    return sections
