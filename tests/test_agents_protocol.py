"""The dev server's agent protocol message by message, with workers made of a bare WebSocket and the
``livekit.protocol.agent`` messages (no SDK, no media): registration, ping, availability and
assignment, load-aware choice, declines, re-dispatch after a dropped connection but not after a clean
close, and the AgentDispatchService API in protobuf (``livekit-api``) and JSON."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from livekit import api
from livekit.protocol import agent, models

from lkplug_livekit.devserver.server import DevServer


@pytest.fixture
async def server():
    devserver = await DevServer().start()
    try:
        yield devserver
    finally:
        await devserver.stop()


class RawWorker:
    """A worker speaking the protocol by hand."""

    def __init__(self, session, ws):
        self.session, self.ws = session, ws
        self.id = ""

    @classmethod
    async def connect(cls, server, agent_name="", job_type=agent.JobType.JT_ROOM, register=True):
        token = api.AccessToken(server.api_key, server.api_secret).with_grants(api.VideoGrants(agent=True))
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(
            f"{server.url}/agent", headers={"Authorization": f"Bearer {token.to_jwt()}"}
        )
        worker = cls(session, ws)
        if register:
            request = agent.RegisterWorkerRequest(type=job_type, agent_name=agent_name, version="raw")
            await worker.send(register=request)
            answer = await worker.receive("register")
            worker.id = answer.worker_id
            assert answer.server_info.agent_protocol == 1
        return worker

    async def send(self, **message) -> None:
        await self.ws.send_bytes(agent.WorkerMessage(**message).SerializeToString())

    async def receive(self, which: str, timeout: float = 5):
        message = agent.ServerMessage()
        message.ParseFromString(await self.ws.receive_bytes(timeout=timeout))
        assert message.WhichOneof("message") == which, message
        return getattr(message, which)

    async def accept(self, identity: str = "raw-agent") -> agent.JobAssignment:
        request = await self.receive("availability")
        await self.send(
            availability=agent.AvailabilityResponse(
                job_id=request.job.id, available=True, participant_identity=identity, participant_name="raw"
            )
        )
        return await self.receive("assignment")

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def drop(self) -> None:
        """Cut the connection without a close frame, as a killed process does."""
        self.ws._response.connection.transport.abort()
        await self.session.close()


async def create_dispatch(server, room: str, agent_name: str = "", **request):
    async with api.LiveKitAPI(server.url, server.api_key, server.api_secret) as lkapi:
        return await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, **request)
        )


async def test_registration_ping_and_assignment_with_a_token(server):
    worker = await RawWorker.connect(server)
    try:
        assert worker.id.startswith("AW_")
        await worker.send(ping=agent.WorkerPing(timestamp=1234))
        assert (await worker.receive("pong")).last_timestamp == 1234
        server.room("talk")  # a new room: an automatic room job
        assignment = await worker.accept("raw-agent")
        job = assignment.job
        assert job.id.startswith("AJ_") and job.type == agent.JobType.JT_ROOM and job.room.name == "talk"
        assert job.state.worker_id == worker.id and job.state.participant_identity == "raw-agent"
        claims = api.TokenVerifier(server.api_key, server.api_secret).verify(assignment.token)
        assert (claims.identity, claims.name, claims.kind) == ("raw-agent", "raw", "agent")
        assert claims.video.room == "talk" and claims.video.room_join and claims.video.agent
        assert claims.attributes == {"lk.agent_name": ""}
        await worker.send(update_job=agent.UpdateJobStatus(job_id=job.id, status=agent.JobStatus.JS_RUNNING))
        await worker.send(update_job=agent.UpdateJobStatus(job_id=job.id, status=agent.JobStatus.JS_SUCCESS))
        await worker.send(ping=agent.WorkerPing(timestamp=5))  # in order: the updates were handled
        await worker.receive("pong")
        assert server.agents.workers[worker.id].jobs == {}
    finally:
        await worker.close()


async def test_a_socket_without_the_agent_grant_is_refused(server):
    token = server.token("someone")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{server.url}/agent", headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 401


async def test_the_less_loaded_available_worker_gets_the_job(server):
    busy = await RawWorker.connect(server)
    idle = await RawWorker.connect(server)
    full = await RawWorker.connect(server)
    try:
        await busy.send(
            update_worker=agent.UpdateWorkerStatus(status=agent.WorkerStatus.WS_AVAILABLE, load=0.6)
        )
        await idle.send(
            update_worker=agent.UpdateWorkerStatus(status=agent.WorkerStatus.WS_AVAILABLE, load=0.1)
        )
        await full.send(update_worker=agent.UpdateWorkerStatus(status=agent.WorkerStatus.WS_FULL, load=0.0))
        for worker in (busy, idle, full):  # the updates are in before the room comes
            await worker.send(ping=agent.WorkerPing(timestamp=1))
            await worker.receive("pong")
        server.room("one")
        assert (await idle.accept()).job.room.name == "one"
        # declined by the idle one: the next available worker is asked
        server.room("two")
        request = await idle.receive("availability")
        await idle.send(availability=agent.AvailabilityResponse(job_id=request.job.id, available=False))
        assert (await busy.accept()).job.id == request.job.id
        with pytest.raises(asyncio.TimeoutError):
            await full.receive("availability", timeout=0.5)  # a full worker is never asked
    finally:
        for worker in (busy, idle, full):
            await worker.close()


async def test_a_dropped_worker_has_its_jobs_redispatched_a_closed_one_not(server):
    first = await RawWorker.connect(server)
    second = await RawWorker.connect(server)
    try:
        # both idle: the tie goes to the one with fewer jobs
        server.room("a")
        taken_a = await first.accept("agent-a")
        server.room("b")
        taken_b = await second.accept("agent-b")
        await first.drop()
        again = await second.accept("agent-a2")
        assert again.job.room.name == "a" and again.job.dispatch_id == taken_a.job.dispatch_id
        assert again.job.id != taken_a.job.id
        third = await RawWorker.connect(server)
        await second.close()  # a clean close (after draining): its jobs end with it
        with pytest.raises(asyncio.TimeoutError):
            await third.receive("availability", timeout=1.0)
        assert taken_b.job.room.name == "b"
        await third.close()
    finally:
        await second.close()


async def test_explicit_dispatch_api_in_protobuf_and_json(server):
    named = await RawWorker.connect(server, agent_name="cleaner")
    try:
        made = await create_dispatch(server, "meeting", "cleaner", metadata='{"lang": "fr"}')
        assignment = await named.accept()
        assert assignment.job.dispatch_id == made.id and assignment.job.metadata == '{"lang": "fr"}'
        assert assignment.job.agent_name == "cleaner"
        admin = api.AccessToken(server.api_key, server.api_secret).with_grants(
            api.VideoGrants(room_admin=True, room="meeting")
        )
        headers = {"Authorization": f"Bearer {admin.to_jwt()}"}
        base = f"http://127.0.0.1:{server.port}/twirp/livekit.AgentDispatchService"
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/ListDispatch", json={"room": "meeting"}, headers=headers
            ) as reply:
                assert reply.status == 200
                listed = (await reply.json())["agentDispatches"]
            assert {d.get("agentName", "") for d in listed} == {"", "cleaner"}
            async with session.post(
                f"{base}/DeleteDispatch", json={"room": "meeting", "dispatchId": "AD_nope"}, headers=headers
            ) as reply:
                assert reply.status == 404 and (await reply.json())["code"] == "not_found"
            async with session.post(f"{base}/ListDispatch", json={"room": "other"}, headers=headers) as reply:
                assert reply.status == 403  # the token is for another room
            async with session.post(f"{base}/ListDispatch", json={"room": "meeting"}) as reply:
                assert reply.status == 401
        async with api.LiveKitAPI(server.url, server.api_key, server.api_secret) as lkapi:
            await lkapi.agent_dispatch.delete_dispatch(made.id, "meeting")
        assert (await named.receive("termination")).job_id == assignment.job.id
    finally:
        await named.close()


async def test_simulate_job_assigns_to_the_asking_worker(server):
    worker = await RawWorker.connect(server)
    try:
        await worker.send(simulate_job=agent.SimulateJobRequest(room=models.Room(name="sim", sid="RM_sim")))
        assignment = await worker.accept()
        assert assignment.job.room.name == "sim" and assignment.job.type == agent.JobType.JT_ROOM
    finally:
        await worker.close()
