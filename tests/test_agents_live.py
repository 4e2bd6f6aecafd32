"""``lkplug worker`` as LiveKit Agents workers, dispatched by the dev server: every room recorded once
over two workers, re-dispatch after a worker is killed, draining on SIGTERM, explicit dispatch (the
AgentDispatchService API and a token's room configuration), per-publisher twins, and a worker written
only against livekit-agents' public API.

Workers run with ``--executor thread`` where a test does not need job processes (the machine has 2
cores); the drain test uses job processes, as a production worker does."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import soundfile
from heard import sounding_level, steady
from livekit import api, rtc

from lkplug.registry import Registry
from lkplug.testing import dominant_frequency
from lkplug_livekit.devserver.peers import RATE
from lkplug_livekit.worker import WorkerSettings, job_fields, job_source

pytestmark = pytest.mark.live
SENT_RMS_DB = -6.0 - 3.01  # what peers' publish_sine sends: a sine with a -6 dBFS peak
HERE = Path(__file__).resolve().parent
JOB_LINE = re.compile(r"lkplug: job (AJ_\w+) \(room ([\w-]+)\): (.*)")


class Worker:
    """A worker in a child process (``lkplug worker`` unless ``command`` says otherwise); its stderr
    lines are kept in ``lines``."""

    def __init__(self, server, *args: str, cwd: Path, command=None):
        self.server, self.args, self.cwd = server, args, cwd
        self.command = command or [sys.executable, "-m", "lkplug", "worker"]
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()

    async def start(self, ready: str = "registered", timeout: float = 60) -> Worker:
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LIVEKIT_URL": self.server.url,
            "LIVEKIT_API_KEY": self.server.api_key,
            "LIVEKIT_API_SECRET": self.server.api_secret,
        }
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            *self.args,
            env=env,
            cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        asyncio.ensure_future(self._read())
        await self.wait_for(lambda line: ready in line, timeout)
        return self

    async def _read(self) -> None:
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 30) -> str:
        """The first line (seen so far or to come) that ``predicate`` accepts."""

        async def look():
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                if self.process.returncode is not None and self.process.stderr.at_eof():
                    raise AssertionError("the worker exited:\n" + "\n".join(self.lines))
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(look(), timeout)
        except asyncio.TimeoutError:
            said = "\n".join(self.lines)
            raise AssertionError(f"not seen within {timeout} s; the worker said:\n{said}") from None

    def jobs(self) -> dict[str, set[str]]:
        """room -> ids of the jobs this worker started there."""
        found: dict[str, set[str]] = {}
        for line in self.lines:
            match = JOB_LINE.search(line)
            if match and match.group(3).startswith("started as"):
                found.setdefault(match.group(2), set()).add(match.group(1))
        return found

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def workers():
    started: list[Worker] = []

    async def start(server, *args: str, cwd: Path, **options) -> Worker:
        worker = Worker(server, *args, cwd=cwd, **options)
        started.append(worker)
        return await worker.start()

    try:
        yield start
    finally:
        for worker in started:
            await worker.close()


RECORD = ("--proc", "gain:db=-6", "--sink", "wav:rec/{room}/{identity}.wav")
LIGHT = ("--executor", "thread", "--max-jobs", "8", "--load-threshold", "1")


def agents_in(peer) -> list[str]:
    agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    return sorted(p.identity for p in peer.room.remote_participants.values() if p.kind == agent)


async def until(condition, timeout: float = 30, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := condition()):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return result


def check_recording(path: Path, freq: float) -> float:
    """A valid WAV of ``freq`` at the sent level, 6 dB down; returns its length in seconds."""
    data, rate = soundfile.read(path)
    assert rate == RATE
    heard = steady(data)
    assert len(heard) > RATE, f"{path}: {len(data) / rate:.2f} s"
    assert dominant_frequency(heard, rate) == pytest.approx(freq, abs=2), path
    assert sounding_level(heard, rate) == pytest.approx(SENT_RMS_DB - 6.0, abs=0.5), path
    return len(data) / rate


async def test_every_room_is_recorded_once_over_two_workers(livekit_server, livekit_join, workers, tmp_path):
    first = await workers(livekit_server, *RECORD, *LIGHT, cwd=tmp_path / "w1")
    second = await workers(livekit_server, *RECORD, *LIGHT, cwd=tmp_path / "w2")
    freqs = {"room-a": 300, "room-b": 450, "room-c": 600, "room-d": 750}
    peers = {}
    for room, freq in freqs.items():
        peers[room] = await livekit_join(f"pub-{room}", room, auto_subscribe=False)
        await peers[room].publish_sine(freq)
    for room, peer in peers.items():
        await until(lambda peer=peer: agents_in(peer), what=f"an lkplug agent in {room}")
    for room in freqs:  # every room's recording started
        await until(
            lambda room=room: any((w.cwd / "rec" / room).is_dir() for w in (first, second)),
            what=f"a recording of {room}",
        )
    await asyncio.sleep(5)
    for room, peer in peers.items():
        assert len(agents_in(peer)) == 1, (room, agents_in(peer))
        await peer.close()  # the room's job ends when everyone left
    jobs = [first.jobs(), second.jobs()]
    for room in freqs:
        assert sum(len(found.get(room, ())) for found in jobs) == 1, (room, jobs)
    assert jobs[0] and jobs[1], f"all jobs on one worker: {jobs}"
    for worker in (first, second):
        for room in worker.jobs():
            await worker.wait_for(lambda line, room=room: f"(room {room}): ended after" in line)
        assert await worker.stop() == 0, "\n".join(worker.lines)
    for room, freq in freqs.items():
        owner = first if room in jobs[0] else second
        files = list((owner.cwd / "rec" / room).iterdir())
        assert [f.name for f in files] == [f"pub-{room}.wav"]
        assert check_recording(files[0], freq) > 4.5


async def test_a_killed_workers_rooms_go_to_the_other(livekit_server, livekit_join, workers, tmp_path):
    first = await workers(livekit_server, *RECORD, *LIGHT, cwd=tmp_path / "w1")
    second = await workers(livekit_server, *RECORD, *LIGHT, cwd=tmp_path / "w2")
    freqs = {"room-a": 350, "room-b": 550}  # two rooms: one on each worker
    peers = {}
    for room, freq in freqs.items():
        peers[room] = await livekit_join(f"pub-{room}", room, auto_subscribe=False)
        await peers[room].publish_sine(freq)
        await until(
            lambda room=room: any(room in w.jobs() for w in (first, second)), what=f"a job for {room}"
        )
    victim = first if first.jobs() else second
    survivor = second if victim is first else first
    moved = set(victim.jobs())
    assert moved and set(survivor.jobs()), (first.jobs(), second.jobs())
    await asyncio.sleep(2)
    killed_at = time.monotonic()
    await victim.stop(signal.SIGKILL)
    for room in moved:
        await survivor.wait_for(lambda line, room=room: f"(room {room}): receiving" in line, timeout=30)
        print(f"{room}: recorded again {time.monotonic() - killed_at:.2f} s after the kill")
    for room, peer in peers.items():  # the killed worker's participant is gone, the survivor's is there
        # (the killed one's participant is kept for the server's departure timeout, 20 s, as LiveKit does)
        await until(lambda peer=peer: len(agents_in(peer)) == 1, timeout=60, what=f"one agent in {room}")
    await asyncio.sleep(5)
    for peer in peers.values():
        await peer.close()
    for room in freqs:
        await survivor.wait_for(lambda line, room=room: f"(room {room}): ended after" in line)
    assert await survivor.stop() == 0, "\n".join(survivor.lines)
    for room, freq in freqs.items():  # every file of the survivor, also of the rooms it took over
        check_recording(survivor.cwd / "rec" / room / f"pub-{room}.wav", freq)


async def test_sigterm_drains_and_closes_outputs(livekit_server, livekit_join, workers, tmp_path):
    worker = await workers(
        livekit_server, *RECORD, "--max-jobs", "4", "--load-threshold", "1", "--drain-timeout", "4",
        cwd=tmp_path / "w",
    )  # fmt: skip
    alice = await livekit_join("alice", "busy", auto_subscribe=False)
    await alice.publish_sine(440)
    await worker.wait_for(lambda line: "(room busy): receiving" in line)
    receiving = time.monotonic()
    await asyncio.sleep(2)
    worker.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await worker.wait_for(lambda line: "draining" in line)
    bob = await livekit_join("bob", "late", auto_subscribe=False)  # a new room (a room job) while it drains
    assert await asyncio.wait_for(worker.process.wait(), 60) == 0, "\n".join(worker.lines)
    assert "late" not in worker.jobs() and agents_in(bob) == []
    assert "busy" in worker.jobs()
    seconds = check_recording(tmp_path / "w" / "rec" / "busy" / "alice.wav", 440)
    # the media up to the signal is there, and the job went on while the worker drained (4 s)
    assert seconds >= signalled - receiving + 3.0, "\n".join(worker.lines)


async def test_explicit_dispatch_by_api_and_token(livekit_server, livekit_join, workers, tmp_path):
    worker = await workers(
        livekit_server, *RECORD, "--sink", "wav:jobs/{job}/{identity}.wav", *LIGHT, "--agent-name", "cleaner",
        cwd=tmp_path / "w",
    )  # fmt: skip
    plain = await livekit_join("plain-pub", "plain", auto_subscribe=False)
    await plain.publish_sine(300)
    # CreateDispatch with livekit-api's client; the room exists once the dispatch made it
    async with api.LiveKitAPI(livekit_server.url, livekit_server.api_key, livekit_server.api_secret) as lkapi:
        made = await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="cleaner", room="by-api", metadata="m1")
        )
        assert made.id.startswith("AD_") and (made.agent_name, made.room) == ("cleaner", "by-api")
        by_api = await livekit_join("api-pub", "by-api", auto_subscribe=False)
        await by_api.publish_sine(450)
        await until(lambda: agents_in(by_api), what="the cleaner in by-api")
        # besides the room's automatic dispatch (no agent name), as the server lists them
        listed = {d.agent_name: d for d in await lkapi.agent_dispatch.list_dispatch("by-api")}
        assert sorted(listed) == ["", "cleaner"] and listed["cleaner"].id == made.id
        jobs = [(j.room.name, j.agent_name, j.type) for j in listed["cleaner"].state.jobs]
        assert jobs == [("by-api", "cleaner", api.JobType.JT_ROOM)]
        assert list(listed[""].state.jobs) == []  # no worker without an agent name
        # the token's room configuration asks for the agent when its holder creates the room
        token = (
            api.AccessToken(livekit_server.api_key, livekit_server.api_secret)
            .with_identity("token-pub")
            .with_grants(api.VideoGrants(room_join=True, room="by-token"))
            .with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name="cleaner")]))
            .to_jwt()
        )
        from lkplug_livekit.devserver.peers import Peer

        by_token = await Peer.join(livekit_server.url, token, auto_subscribe=False)
        try:
            await by_token.publish_sine(600)
            await until(lambda: agents_in(by_token), what="the cleaner in by-token")
            await asyncio.sleep(2)
            assert agents_in(plain) == []  # no automatic dispatch for a named agent
            assert set(worker.jobs()) == {"by-api", "by-token"}
            deleted = await lkapi.agent_dispatch.delete_dispatch(made.id, "by-api")
            assert deleted.id == made.id and deleted.state.deleted_at > 0
            assert [d.agent_name for d in await lkapi.agent_dispatch.list_dispatch("by-api")] == [""]
            await until(lambda: not agents_in(by_api), what="the cleaner leaving by-api")
        finally:
            await by_token.close()
    await by_api.close()
    await worker.wait_for(lambda line: "(room by-token): ended after" in line)
    assert await worker.stop() == 0
    check_recording(tmp_path / "w" / "rec" / "by-token" / "token-pub.wav", 600)
    check_recording(tmp_path / "w" / "rec" / "by-api" / "api-pub.wav", 450)
    (job,) = worker.jobs()["by-api"]  # {job} in a template: the job's id
    check_recording(tmp_path / "w" / "jobs" / job / "api-pub.wav", 450)


async def test_per_publisher_jobs_make_processed_twins(livekit_server, livekit_join, workers, tmp_path):
    worker = await workers(
        livekit_server,
        "--per", "publisher", "--proc", "gain:db=-6", "--sink", "track:{identity}-processed", *LIGHT,
        "--drain-timeout", "2",
        cwd=tmp_path / "w",
    )  # fmt: skip
    freqs = {"alice": 440, "bob": 660}
    for identity, freq in freqs.items():
        peer = await livekit_join(identity, "twins", auto_subscribe=False)
        await peer.publish_sine(freq)
    carol = await livekit_join("carol", "twins", auto_subscribe=False)  # only the twins, one by one

    def twin_owner(name):
        for participant in carol.room.remote_participants.values():
            if any(p.name == name for p in participant.track_publications.values()):
                return participant.identity
        return None

    for identity, freq in freqs.items():
        owner = await until(lambda identity=identity: twin_owner(f"{identity}-processed"), what="a twin")
        assert owner.startswith("lkplug-AJ_")
        heard = steady(await carol.receive_audio(owner, seconds=3.0))
        assert dominant_frequency(heard, RATE) == pytest.approx(freq, abs=2)
        assert sounding_level(heard, RATE) == pytest.approx(SENT_RMS_DB - 6.0, abs=0.5)
    assert len({twin_owner(f"{i}-processed") for i in freqs}) == 2  # a job (participant) each
    assert sum(len(jobs) for jobs in worker.jobs().values()) == 2  # carol publishes nothing: no job
    assert await worker.stop() == 0, "\n".join(worker.lines)  # the publishers stay: drained for 2 s


async def test_a_plain_livekit_agents_worker_is_dispatched(livekit_server, livekit_join, workers, tmp_path):
    """Nothing of lkplug's in the worker: the dev server speaks the framework's protocol."""
    command = [sys.executable, str(HERE / "agents_minimal_worker.py")]
    worker = await workers(livekit_server, cwd=tmp_path, command=command)
    alice = await livekit_join("alice", "plain-agents", auto_subscribe=False)
    line = await worker.wait_for(lambda line: line.startswith("job "))
    _, job_id, room, identity = line.split()
    assert (room, identity) == ("plain-agents", f"minimal-{job_id}")
    await until(lambda: agents_in(alice) == [identity], what="the minimal agent in the room")
    assert job_id.startswith("AJ_")


def test_a_publisher_jobs_source_is_named_after_its_participant():
    """Messages about a per-publisher job's source name its participant (before: "track:identity",
    the placeholder it was built from, in a new user's worker error)."""
    settings = WorkerSettings(source="track:{identity}", procs=(), sinks=("null",), per="publisher")
    source = job_source(settings, Registry.load(), job_fields(settings, "room", "AJ_1", "ali,ce"))
    assert source.label == "track:ali,ce"
    assert source.obj.selector.identity == "ali,ce"
