"""Agents workers on the local dev server (issue 12): dispatch latency, re-dispatch time after a worker
is killed, and the CPU cost of a recorded stream inside a worker against ``lkplug run``.

    python bench/agents_bench.py [--runs 5] [--seconds 10] [--streams 4]

- dispatch latency: from a publisher's join returning (its room exists) to the worker's participant
  joining that room, as the publisher sees it; for job processes (the default, one kept idle) and
  for jobs in threads;
- re-dispatch: two workers, one room; the worker with the job is killed (SIGKILL); the time until the
  other worker's participant joins the room, and until its recording receives audio;
- CPU: process-tree CPU (worker, its job processes) over ``--seconds`` while it records ``--streams``
  rooms of one publisher each, against ``lkplug run --source 'track:guest-*'`` recording as many
  publishers of one room; both with gain −6 dB into WAV files.

Everything runs on 127.0.0.1, server included (aiortc): the dev server's decoding and encoding is on
the same cores, so absolute numbers are pessimistic; the comparisons in one run carry over.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from livekit import rtc

from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import DevServerProcess

CHAIN = ["--proc", "gain:db=-6"]


def env_for(server) -> dict:
    return {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "LIVEKIT_ROOM": "bench",
    }


def median_ms(values) -> str:
    values = list(values)
    return f"{statistics.median(values) * 1000:7.0f} ms (n={len(values)}, min {min(values) * 1000:.0f})"


class Child:
    """``lkplug ...`` in a child process, its stderr lines kept."""

    def __init__(self, server, *args: str, cwd: Path):
        self.server, self.args, self.cwd = server, args, cwd
        self.lines: list[str] = []

    async def start(self, ready: str | None = "registered") -> Child:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lkplug", *self.args, env=env_for(self.server), cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        asyncio.ensure_future(self._read())
        if ready:
            await self.seen(ready)
        return self

    async def _read(self) -> None:
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def seen(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not seen: {text!r}\n" + "\n".join(self.lines[-20:]))
            await asyncio.sleep(0.02)

    def rooms(self) -> set[str]:
        return {m.group(1) for line in self.lines if (m := re.search(r"\(room ([\w-]+)\): started", line))}

    def cpu(self) -> float:
        """User + system CPU seconds of the process and its children so far."""
        total = 0.0
        try:
            root = psutil.Process(self.process.pid)
            for process in [root, *root.children(recursive=True)]:
                with_children = process.cpu_times()
                total += with_children.user + with_children.system
        except psutil.NoSuchProcess:
            pass
        return total

    async def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)
            await self.process.wait()


def worker_args(*extra: str) -> list[str]:
    return ["worker", *CHAIN, "--sink", "wav:rec/{room}/{identity}.wav", "--max-jobs", "16",
            "--load-threshold", "1", "--drain-timeout", "5", *extra]  # fmt: skip


async def agent_joined(peer: Peer, exclude=()) -> str:
    agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    while True:
        for participant in peer.room.remote_participants.values():
            if participant.kind == agent and participant.identity not in exclude:
                return participant.identity
        await asyncio.sleep(0.005)


async def dispatch_latency(server, workdir: Path, runs: int, *extra: str) -> list[float]:
    worker = await Child(server, *worker_args(*extra), cwd=workdir).start()
    delays = []
    try:
        await asyncio.sleep(2)  # the idle job process is ready
        for index in range(runs):
            peer = await Peer.join(
                server.url, server.token("guest", f"latency-{index}"), auto_subscribe=False
            )
            joined = time.monotonic()
            await peer.publish_sine(440)
            await asyncio.wait_for(agent_joined(peer), 30)
            delays.append(time.monotonic() - joined)
            await asyncio.sleep(1)
            await peer.close()
            await asyncio.sleep(2)  # the job ends, the next idle process starts
    finally:
        await worker.stop()
    return delays


async def redispatch(server, workdir: Path, runs: int) -> tuple[list[float], list[float]]:
    joins, records = [], []
    workers = [
        await Child(server, *worker_args("--executor", "thread"), cwd=workdir / f"w{i}").start()
        for i in range(2)
    ]
    try:
        for index in range(runs):
            room = f"redispatch-{index}"
            peer = await Peer.join(server.url, server.token("guest", room), auto_subscribe=False)
            await peer.publish_sine(440)
            first = await asyncio.wait_for(agent_joined(peer), 30)
            while not any(room in w.rooms() for w in workers):  # its log line may come after the join
                await asyncio.sleep(0.02)
            owner = next(w for w in workers if room in w.rooms())
            other = next(w for w in workers if w is not owner)
            await owner.seen(f"(room {room}): receiving")
            await asyncio.sleep(1)
            killed = time.monotonic()
            await owner.stop(signal.SIGKILL)
            await asyncio.wait_for(agent_joined(peer, exclude=(first,)), 30)
            joins.append(time.monotonic() - killed)
            await other.seen(f"(room {room}): receiving")
            records.append(time.monotonic() - killed)
            await peer.close()
            workers[workers.index(owner)] = await Child(
                server, *worker_args("--executor", "thread"), cwd=workdir / f"w{index}-again"
            ).start()
            await asyncio.sleep(2)
    finally:
        for worker in workers:
            await worker.stop()
    return joins, records


async def cpu_while_recording(child: Child, seconds: float) -> float:
    before, start = child.cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    return (child.cpu() - before) / (time.monotonic() - start)


async def cpu_worker(server, workdir: Path, streams: int, seconds: float, *extra: str) -> tuple[float, float]:
    """CPU (cores) of an idle worker, and per recorded stream above that."""
    worker = await Child(server, *worker_args(*extra), cwd=workdir).start()
    peers = []
    try:
        await asyncio.sleep(3)
        idle = await cpu_while_recording(worker, seconds)
        for index in range(streams):
            peer = await Peer.join(server.url, server.token("guest", f"cpu-{index}"), auto_subscribe=False)
            await peer.publish_sine(300 + 100 * index)
            peers.append(peer)
        for index in range(streams):
            await worker.seen(f"(room cpu-{index}): receiving")
        await asyncio.sleep(2)
        busy = await cpu_while_recording(worker, seconds)
    finally:
        for peer in peers:
            await peer.close()
        await worker.stop()
    return idle, (busy - idle) / streams


async def cpu_run(server, workdir: Path, streams: int, seconds: float) -> tuple[float, float]:
    peers = []
    for index in range(streams):
        peer = await Peer.join(server.url, server.token(f"guest-{index}", "bench"), auto_subscribe=False)
        await peer.publish_sine(300 + 100 * index)
        peers.append(peer)
    (workdir / "rec").mkdir(parents=True, exist_ok=True)
    run = Child(
        server, "run", "--source", "track:guest-*", *CHAIN, "--sink", "wav:rec/{identity}.wav", cwd=workdir
    )
    try:
        await run.start(ready=None)
        for index in range(streams):
            await run.seen(f"receiving guest-{index}")
        await asyncio.sleep(2)
        busy = await cpu_while_recording(run, seconds)
    finally:
        await run.stop()
        for peer in peers:
            await peer.close()
    return busy, busy / streams


async def main(runs: int, seconds: float, streams: int) -> None:
    server = await DevServerProcess().start()
    workdir = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    try:
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        delays = await dispatch_latency(server, workdir / "lat-proc", runs)
        print(f"dispatch latency, job processes     {median_ms(delays)}")
        delays = await dispatch_latency(server, workdir / "lat-thread", runs, "--executor", "thread")
        print(f"dispatch latency, job threads       {median_ms(delays)}")
        joins, records = await redispatch(server, workdir / "redispatch", runs)
        print(f"re-dispatch: kill to new agent      {median_ms(joins)}")
        print(f"re-dispatch: kill to recording      {median_ms(records)}")
        for label, extra in (("job processes", ()), ("job threads", ("--executor", "thread"))):
            idle, per = await cpu_worker(server, workdir / f"cpu-{label[4:]}", streams, seconds, *extra)
            print(
                f"CPU, worker with {label:<13}  idle {idle * 100:5.1f} % of a core, "
                f"{per * 100:5.1f} % per recorded stream ({streams} rooms)"
            )
        busy, per = await cpu_run(server, workdir / "cpu-run", streams, seconds)
        print(
            f"CPU, lkplug run (one room)          {per * 100:5.1f} % per recorded stream ({streams} streams)"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    except BaseException:
        print("\n".join(server.lines[-30:]), file=sys.stderr)
        raise
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=4)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.seconds, options.streams))
