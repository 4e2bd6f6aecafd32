"""The agent side of the dev server: LiveKit Agents workers register here and get jobs.

What it speaks is ``livekit.protocol.agent`` as the LiveKit server does (livekit/livekit
``pkg/agent/worker.go`` and ``pkg/service/agentservice.go``):

- ``GET /agent``: the worker WebSocket, opened with a token that has the ``agent`` grant. The first
  ``WorkerMessage`` must be ``register`` (within 10 s); the answer is ``RegisterWorkerResponse`` with
  the worker's ``AW_`` id. Then ``ping`` gets ``pong``, ``update_worker`` sets the worker's status and
  load, ``update_job`` a job's state, ``simulate_job`` assigns a job for a room to this worker.
- A job goes to a worker with an ``AvailabilityRequest``; an ``AvailabilityResponse`` that accepts it
  (within 10 s) is answered with a ``JobAssignment`` carrying a token for the room, minted for the
  identity, name, metadata and attributes the worker chose and the permissions it registered with.
  A worker that declines or does not answer in time is skipped and the next one is asked.
- Dispatches: each room gets the dispatches of its creator's token room configuration
  (``RoomConfiguration.agents``), or else one dispatch without an agent name (automatic dispatch:
  workers registered without ``agent_name``). A dispatch launches a room job for its room (``JT_ROOM``),
  a publisher job for each participant's first publication (``JT_PUBLISHER``) and a participant job for
  each participant who joins (``JT_PARTICIPANT``), to workers of that type and agent name; agents'
  and egress participants get none (the server's ``IsDependent``).
- ``/twirp/livekit.AgentDispatchService/{CreateDispatch,ListDispatch,DeleteDispatch}`` with a
  ``room_admin`` token for the room, protobuf or JSON bodies (what ``livekit-api`` sends).

Worker choice is load aware: among the available workers (status ``WS_AVAILABLE``, not draining) the
one with the lowest reported load, then the fewest running jobs. The real server picks at random,
weighted by spare capacity; a deterministic order keeps the tests' spread certain.

Re-dispatch (what LiveKit Cloud does for ``JRP_ON_FAILURE``, the default restart policy): when a
worker's connection drops (closed without a close frame: killed, crashed, cut off) with jobs running,
each job whose room and dispatch still exist is launched again, on another worker. A worker that
closes its socket cleanly (after draining) has its jobs ended, not restarted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web
from google.protobuf import json_format
from livekit import api
from livekit.protocol import agent, agent_dispatch, models, room

log = logging.getLogger("lkplug.devserver.agents")

REGISTER_TIMEOUT = 10.0  # seconds for a new worker's register message (the server's RegisterTimeout)
ASSIGN_TIMEOUT = 10.0  # seconds for a worker's availability answer (the server's AssignJobTimeout)
AGENT_PROTOCOL = 1  # the server's agent.CurrentProtocol
AGENT_NAME_ATTRIBUTE = "lk.agent_name"
TWIRP_PREFIX = "/twirp/livekit.AgentDispatchService/"


def _now_ns() -> int:
    return time.time_ns()


class NotAvailable(Exception):
    """The worker declined the job, did not answer in time, or went away."""


@dataclass(eq=False)
class Worker:
    id: str
    ws: web.WebSocketResponse
    agent_name: str
    job_type: int
    namespace: str
    version: str
    permissions: models.ParticipantPermission
    status: int = agent.WorkerStatus.WS_AVAILABLE
    load: float = 0.0
    draining: bool = False
    jobs: dict = field(default_factory=dict)  # job id -> agent.Job, running on this worker
    waiting: dict = field(default_factory=dict)  # job id -> future of its AvailabilityResponse
    closed: bool = False

    @property
    def available(self) -> bool:
        return not self.closed and not self.draining and self.status == agent.WorkerStatus.WS_AVAILABLE

    async def send(self, **message) -> None:
        if self.closed or self.ws.closed:
            raise NotAvailable("worker connection closed")
        try:
            await self.ws.send_bytes(agent.ServerMessage(**message).SerializeToString())
        except ConnectionError as exc:
            raise NotAvailable(str(exc)) from None


@dataclass(eq=False)
class Dispatch:
    """An ``AgentDispatch`` of a room and the jobs it launched."""

    info: agent_dispatch.AgentDispatch
    jobs: list = field(default_factory=list)  # agent.Job, in launch order

    def message(self) -> agent_dispatch.AgentDispatch:
        out = agent_dispatch.AgentDispatch()
        out.CopyFrom(self.info)
        out.state.jobs.extend(self.jobs)
        return out


class AgentService:
    """The agent protocol and dispatch API of a :class:`~.server.DevServer`; the server calls
    :meth:`room_created`, :meth:`participant_joined`, :meth:`participant_published`,
    :meth:`participant_left` and :meth:`room_closed` as its rooms change."""

    def __init__(self, server):
        self.server = server
        self.workers: dict[str, Worker] = {}
        self.dispatches: dict[str, dict[str, Dispatch]] = {}  # room name -> dispatch id -> Dispatch
        self._tasks: set[asyncio.Task] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/agent", self._worker_socket)
        app.router.add_post(TWIRP_PREFIX + "{method}", self._twirp)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for worker in list(self.workers.values()):
            await worker.ws.close()
        self.dispatches.clear()

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # hooks the room code calls -----------------------------------------------------------------

    def room_created(self, room, config: room.RoomConfiguration | None) -> None:
        """A new room: its dispatches from the creator's token room configuration, else automatic
        dispatch; each launches a room job."""
        wanted = list(config.agents) if config is not None and len(config.agents) else []
        for request in wanted or [agent_dispatch.RoomAgentDispatch()]:
            info = agent_dispatch.AgentDispatch(
                id=self.server.new_sid("AD_"),
                agent_name=request.agent_name,
                room=room.name,
                metadata=request.metadata,
                restart_policy=request.restart_policy,
            )
            info.attributes.update(request.attributes)
            self._add_dispatch(room, info)

    def participant_joined(self, room, participant) -> None:
        if not _dependent(participant):
            for dispatch in self.dispatches.get(room.name, {}).values():
                self._spawn(self._launch(room, dispatch, agent.JobType.JT_PARTICIPANT, participant))

    def participant_published(self, room, participant) -> None:
        """Called once per participant of a room, at their first published track."""
        if not _dependent(participant):
            for dispatch in self.dispatches.get(room.name, {}).values():
                self._spawn(self._launch(room, dispatch, agent.JobType.JT_PUBLISHER, participant))

    def participant_left(self, room, participant) -> None:
        """An agent leaving its room: its worker is told to end the job (the server's TerminateJob
        with AGENT_LEFT_ROOM). The job stays the worker's until the worker reports it ended, so a
        worker that dies meanwhile still has its job re-dispatched."""
        for worker in list(self.workers.values()):
            for job in list(worker.jobs.values()):
                if job.room.name == room.name and job.state.participant_identity == participant.identity:
                    self._spawn(_quietly(worker.send(termination=agent.JobTermination(job_id=job.id))))

    def room_closed(self, room) -> None:
        """The room's dispatches go; jobs still running in it are terminated."""
        self.dispatches.pop(room.name, None)
        for worker in list(self.workers.values()):
            for job in list(worker.jobs.values()):
                if job.room.name == room.name:
                    self._end_job(worker, job, agent.JobStatus.JS_SUCCESS, "")
                    self._spawn(_quietly(worker.send(termination=agent.JobTermination(job_id=job.id))))

    # dispatches --------------------------------------------------------------------------------

    def _add_dispatch(self, room, info: agent_dispatch.AgentDispatch) -> Dispatch:
        info.state.created_at = _now_ns()
        dispatch = Dispatch(info)
        self.dispatches.setdefault(room.name, {})[info.id] = dispatch
        self._spawn(self._launch(room, dispatch, agent.JobType.JT_ROOM))
        for participant in list(room.participants.values()):
            if not _dependent(participant):
                self._spawn(self._launch(room, dispatch, agent.JobType.JT_PARTICIPANT, participant))
                if participant.tracks:
                    self._spawn(self._launch(room, dispatch, agent.JobType.JT_PUBLISHER, participant))
        return dispatch

    def _candidates(self, job: agent.Job, tried: set) -> list[Worker]:
        workers = [
            w
            for w in self.workers.values()
            if w.available
            and w not in tried
            and (w.agent_name, w.namespace, w.job_type) == (job.agent_name, job.namespace, job.type)
        ]
        return sorted(workers, key=lambda w: (round(w.load, 2), len(w.jobs) + len(w.waiting)))

    async def _launch(self, room, dispatch: Dispatch, job_type: int, participant=None) -> None:
        """Offer a new job to one worker after another until one takes it (the server's
        JobRequest); with no worker able to, the job is not started, as on the server."""
        job = agent.Job(
            id=self.server.new_sid("AJ_"),
            dispatch_id=dispatch.info.id,
            type=job_type,
            room=room.info(),
            agent_name=dispatch.info.agent_name,
            metadata=dispatch.info.metadata,
        )
        job.attributes.update(dispatch.info.attributes)
        if participant is not None:
            job.participant.CopyFrom(participant.info())
        tried: set[Worker] = set()
        while True:
            candidates = self._candidates(job, tried)
            if not candidates:
                if tried or any(
                    (w.agent_name, w.job_type) == (job.agent_name, job.type) for w in self.workers.values()
                ):
                    log.warning("no worker available for job %s in room %s", job.id, room.name)
                return
            worker = candidates[0]
            tried.add(worker)
            try:
                state = await self._assign(worker, job)
            except NotAvailable as exc:
                log.info("worker %s did not take job %s: %s", worker.id, job.id, exc)
                continue
            if self.dispatches.get(room.name, {}).get(dispatch.info.id) is dispatch:
                dispatch.jobs.append(job)
            log.info(
                "job %s (%s) for room %s assigned to worker %s: %s",
                job.id,
                agent.JobType.Name(job.type),
                room.name,
                worker.id,
                agent.JobStatus.Name(state.status),
            )
            return

    async def _assign(self, worker: Worker, job: agent.Job) -> agent.JobState:
        """AvailabilityRequest, then JobAssignment with a token (the server's Worker.AssignJob)."""
        now = _now_ns()
        job.state.CopyFrom(
            agent.JobState(
                worker_id=worker.id, updated_at=now, started_at=now, status=agent.JobStatus.JS_RUNNING
            )
        )
        answer = asyncio.get_running_loop().create_future()
        worker.waiting[job.id] = answer
        try:
            await worker.send(availability=agent.AvailabilityRequest(job=job))
            try:
                response: agent.AvailabilityResponse = await asyncio.wait_for(answer, ASSIGN_TIMEOUT)
            except asyncio.TimeoutError:
                raise NotAvailable("no availability answer within 10 s") from None
        finally:
            worker.waiting.pop(job.id, None)
        if response.terminate:
            job.state.ended_at = now
            job.state.status = agent.JobStatus.JS_SUCCESS
            return job.state
        if not response.available:
            raise NotAvailable("declined")
        job.state.participant_identity = response.participant_identity
        attributes = dict(response.participant_attributes)
        attributes[AGENT_NAME_ATTRIBUTE] = worker.agent_name
        token = self._agent_token(worker, job.room.name, response, attributes)
        worker.jobs[job.id] = job
        try:
            await worker.send(assignment=agent.JobAssignment(job=job, token=token))
        except NotAvailable:
            worker.jobs.pop(job.id, None)
            raise
        return job.state

    def _agent_token(self, worker: Worker, room_name: str, response, attributes: dict) -> str:
        """The server's BuildAgentToken: the worker's registered permissions, kind agent."""
        permissions = worker.permissions
        sources = [models.TrackSource.Name(s).lower() for s in permissions.can_publish_sources]
        grants = api.VideoGrants(
            room_join=True,
            room=room_name,
            can_publish=permissions.can_publish,
            can_subscribe=permissions.can_subscribe,
            can_publish_data=permissions.can_publish_data,
            can_update_own_metadata=permissions.can_update_metadata,
            can_publish_sources=sources or None,
            hidden=permissions.hidden,
            agent=True,
        )
        return (
            api.AccessToken(self.server.api_key, self.server.api_secret)
            .with_identity(response.participant_identity)
            .with_name(response.participant_name)
            .with_metadata(response.participant_metadata)
            .with_attributes(attributes)
            .with_kind("agent")
            .with_grants(grants)
            .to_jwt()
        )

    def _end_job(self, worker: Worker, job: agent.Job, status: int, error: str) -> None:
        now = _now_ns()
        job.state.status, job.state.error = status, error
        job.state.updated_at = job.state.ended_at = now
        worker.jobs.pop(job.id, None)

    # the worker WebSocket ----------------------------------------------------------------------

    def _claims(self, request: web.Request):
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.query.get("access_token", "")
        try:
            return api.TokenVerifier(self.server.api_key, self.server.api_secret).verify(token)
        except Exception:
            return None

    async def _worker_socket(self, request: web.Request) -> web.StreamResponse:
        claims = self._claims(request)
        if claims is None or not (claims.video and claims.video.agent):
            return web.Response(status=401, text="needs a token with the agent grant")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        worker = await self._register(ws)
        if worker is None:
            await ws.close()
            return ws
        self.workers[worker.id] = worker
        log.info(
            "worker %s registered (agent name %r, %s, version %s)",
            worker.id,
            worker.agent_name,
            agent.JobType.Name(worker.job_type),
            worker.version,
        )
        try:
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    continue
                request_message = agent.WorkerMessage()
                request_message.ParseFromString(message.data)
                try:
                    await self._handle(worker, request_message)
                except Exception:  # one bad message must not end the worker's session
                    log.exception("worker %s: failed to handle %s", worker.id, request_message)
        finally:
            await self._deregister(worker)
        return ws

    async def _register(self, ws: web.WebSocketResponse) -> Worker | None:
        """Read until ``register`` (pings are answered meanwhile), for at most REGISTER_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REGISTER_TIMEOUT
        while True:
            try:
                message = await ws.receive(timeout=max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                log.warning("a worker did not register within %g s", REGISTER_TIMEOUT)
                return None
            if message.type != WSMsgType.BINARY:
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                    return None
                continue
            first = agent.WorkerMessage()
            first.ParseFromString(message.data)
            which = first.WhichOneof("message")
            if which == "ping":
                await ws.send_bytes(_pong(first.ping).SerializeToString())
                continue
            if which != "register":
                log.warning("a worker sent %s before registering", which)
                return None
            register = first.register
            if register.type not in agent.JobType.values():
                log.warning("a worker registered for an unknown job type %s", register.type)
                return None
            permissions = register.allowed_permissions
            if not register.HasField("allowed_permissions"):
                permissions = models.ParticipantPermission(
                    can_subscribe=True, can_publish=True, can_publish_data=True, can_update_metadata=True
                )
            worker = Worker(
                id=self.server.new_sid("AW_"),
                ws=ws,
                agent_name=register.agent_name,
                job_type=register.type,
                namespace=register.namespace,
                version=register.version,
                permissions=permissions,
            )
            info = models.ServerInfo(
                edition=models.ServerInfo.Edition.Standard,
                version=self.server.version,
                protocol=self.server.protocol,
                agent_protocol=AGENT_PROTOCOL,
                node_id="devserver",
            )
            await worker.send(register=agent.RegisterWorkerResponse(worker_id=worker.id, server_info=info))
            return worker

    async def _handle(self, worker: Worker, message: agent.WorkerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "availability":
            answer = worker.waiting.get(message.availability.job_id)
            if answer is not None and not answer.done():
                answer.set_result(message.availability)
            else:
                log.warning("worker %s answered for unknown job %s", worker.id, message.availability.job_id)
        elif which == "update_worker":
            update = message.update_worker
            if update.HasField("status"):
                worker.status = update.status
            worker.load = update.load
            worker.draining = worker.draining or update.draining
        elif which == "update_job":
            update = message.update_job
            job = worker.jobs.get(update.job_id)
            if job is None:
                return  # e.g. the room closed first (the server only logs this at debug level)
            job.state.status, job.state.error = update.status, update.error
            job.state.updated_at = _now_ns()
            if update.status in (agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED):
                self._end_job(worker, job, update.status, update.error)
                log.info("job %s ended: %s", job.id, agent.JobStatus.Name(update.status))
        elif which == "ping":
            await worker.ws.send_bytes(_pong(message.ping).SerializeToString())
        elif which == "simulate_job":
            self._spawn(self._simulate(worker, message.simulate_job))
        elif which == "migrate_job":
            pass  # not implemented on the open-source server either
        else:
            log.warning("worker %s sent an unknown message %s", worker.id, which)

    async def _simulate(self, worker: Worker, request: agent.SimulateJobRequest) -> None:
        job = agent.Job(
            id=self.server.new_sid("AJ_"),
            type=agent.JobType.JT_PUBLISHER if request.HasField("participant") else agent.JobType.JT_ROOM,
            room=request.room,
            agent_name=worker.agent_name,
            namespace=worker.namespace,
        )
        if request.HasField("participant"):
            job.participant.CopyFrom(request.participant)
        try:
            await self._assign(worker, job)
        except NotAvailable as exc:
            log.info("simulated job %s not taken: %s", job.id, exc)

    async def _deregister(self, worker: Worker) -> None:
        worker.closed = True
        self.workers.pop(worker.id, None)
        for answer in worker.waiting.values():
            if not answer.done():
                answer.set_exception(NotAvailable("worker connection closed"))
        orphans = list(worker.jobs.values())
        # a close frame is a worker that shut down (after draining); anything else is a dropped
        # connection (a crash, a kill, the network), whose jobs are started again elsewhere
        dropped = worker.ws.close_code != WSCloseCode.OK
        how = "lost its connection" if dropped else "closed its connection"
        log.info("worker %s %s with %d running jobs", worker.id, how, len(orphans))
        for job in orphans:
            self._end_job(worker, job, agent.JobStatus.JS_FAILED, f"worker {how}")
            if dropped:
                self._redispatch(job)

    def _redispatch(self, job: agent.Job) -> None:
        current = self.server.rooms.get(job.room.name)
        dispatch = self.dispatches.get(job.room.name, {}).get(job.dispatch_id)
        if current is None or dispatch is None or dispatch.info.restart_policy == agent_dispatch.JRP_NEVER:
            return
        participant = None
        if job.HasField("participant"):
            participant = current.participants.get(job.participant.identity)
            if participant is None:
                return  # the publisher left meanwhile
        log.info("re-dispatching job %s of room %s", job.id, job.room.name)
        self._spawn(self._launch(current, dispatch, job.type, participant))

    # AgentDispatchService (twirp) --------------------------------------------------------------

    async def _twirp(self, request: web.Request) -> web.Response:
        methods = {
            "CreateDispatch": (agent_dispatch.CreateAgentDispatchRequest, self._create_dispatch),
            "ListDispatch": (agent_dispatch.ListAgentDispatchRequest, self._list_dispatch),
            "DeleteDispatch": (agent_dispatch.DeleteAgentDispatchRequest, self._delete_dispatch),
        }
        method = methods.get(request.match_info["method"])
        if method is None:
            return _twirp_error(404, "bad_route", f"no method {request.match_info['method']}")
        message_type, handler = method
        as_json = request.content_type == "application/json"
        body = await request.read()
        try:
            message = json_format.Parse(body or b"{}", message_type()) if as_json else message_type()
            if not as_json:
                message.ParseFromString(body)
        except Exception as exc:
            return _twirp_error(400, "malformed", f"cannot parse the request: {exc}")
        claims = self._claims(request)
        grant_room = claims.video.room if claims is not None and claims.video else None
        if claims is None or not claims.video or not claims.video.room_admin:
            return _twirp_error(401, "unauthenticated", "needs a token with the room_admin grant")
        if grant_room and grant_room != message.room:
            return _twirp_error(403, "permission_denied", f"the token is for room {grant_room!r}")
        try:
            reply = await handler(message)
        except LookupError as exc:
            return _twirp_error(404, "not_found", str(exc))
        except ValueError as exc:
            return _twirp_error(400, "invalid_argument", str(exc))
        if as_json:
            return web.json_response(json.loads(json_format.MessageToJson(reply)))
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")

    async def _create_dispatch(self, request) -> agent_dispatch.AgentDispatch:
        if not request.room:
            raise ValueError("no room given")
        current = self.server.room(request.room)  # created if need be, as with auto-create
        info = agent_dispatch.AgentDispatch(
            id=self.server.new_sid("AD_"),
            agent_name=request.agent_name,
            room=request.room,
            metadata=request.metadata,
            restart_policy=request.restart_policy,
        )
        info.attributes.update(request.attributes)
        return self._add_dispatch(current, info).message()

    async def _list_dispatch(self, request) -> agent_dispatch.ListAgentDispatchResponse:
        found = [
            d.message()
            for d in self.dispatches.get(request.room, {}).values()
            if not request.dispatch_id or d.info.id == request.dispatch_id
        ]
        return agent_dispatch.ListAgentDispatchResponse(agent_dispatches=found)

    async def _delete_dispatch(self, request) -> agent_dispatch.AgentDispatch:
        dispatch = self.dispatches.get(request.room, {}).pop(request.dispatch_id, None)
        if dispatch is None:
            raise LookupError("dispatch ID not found")
        dispatch.info.state.deleted_at = _now_ns()
        for worker in list(self.workers.values()):
            for job in list(worker.jobs.values()):
                if job.dispatch_id == dispatch.info.id:
                    self._end_job(worker, job, agent.JobStatus.JS_SUCCESS, "")
                    self._spawn(_quietly(worker.send(termination=agent.JobTermination(job_id=job.id))))
        return dispatch.message()


def _dependent(participant) -> bool:
    """Agents and egress get no jobs of their own (the server's IsDependent)."""
    grants = participant.grants
    return participant.kind in ("agent", "egress") or bool(grants.agent) or bool(grants.recorder)


def _pong(ping: agent.WorkerPing) -> agent.ServerMessage:
    return agent.ServerMessage(
        pong=agent.WorkerPong(last_timestamp=ping.timestamp, timestamp=int(time.time() * 1000))
    )


def _twirp_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status)


async def _quietly(coroutine) -> None:
    try:
        await coroutine
    except NotAvailable:
        pass
