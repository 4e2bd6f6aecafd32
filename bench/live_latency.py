"""Live figures on the local dev server (issues 4, 5 and 15): join time, first-frame time, the latency
a relay (track in -> gain -> track out) adds, lkplug's against the bare SDK's, taking turns in the same
run, and CPU per recorded live stream
(gain + resample to 16 kHz + a WAV file per stream) against the bare SDK's subscriber at its default
frame size, for 1 and 8 concurrent streams.

    python bench/live_latency.py [--runs 5] [--seconds 10] [--streams 1,8] [--only cpu|latency]
                                 [--relay-proc gain:db=-6 ...]

Everything runs on 127.0.0.1 on this machine, server included (aiortc, Python): absolute latencies
include the dev server's decode and re-encode, which a real LiveKit SFU does not do. The comparisons
(lkplug against the bare SDK, in the same run) are what carry over.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from livekit import rtc

from lkplug_livekit.devserver.peers import RATE, Peer
from lkplug_livekit.devserver.process import DevServerProcess

HERE = Path(__file__).resolve().parent
CHAIN = ["--proc", "gain:db=-6", "--proc", "resample:rate=16000"]  # the recording chain (CPU figures)


def summary_ms(values) -> str:
    values = list(values)
    return f"{statistics.median(values) * 1000:.1f} ms (n={len(values)})" if values else "no clicks"


def median_ms(values) -> str:
    values = list(values)
    return f"{statistics.median(values) * 1000:7.1f} ms (n={len(values)}, min {min(values) * 1000:.1f})"


async def timed_join(server, identity: str) -> tuple[Peer, float]:
    started = time.monotonic()
    peer = await Peer.join(server.url, server.token(identity))
    return peer, time.monotonic() - started


async def first_frame(server, identity: str) -> float:
    """From the start of joining to the first audio frame with sound from alice."""
    started = time.monotonic()
    peer = await Peer.join(server.url, server.token(identity))
    try:
        await peer.receive_audio("alice", seconds=0.01)
        return time.monotonic() - started
    finally:
        await peer.close()


async def click_times(track, seconds: float) -> list[float]:
    """Wall times at which each click (one per second) is heard: the arrival of the frame holding its
    peak, plus the peak's place in that frame."""
    times, best = [], (0.0, 0.0)  # (peak, time) in the current second
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    end = time.monotonic() + seconds

    async def listen():
        nonlocal best
        async for event in stream:
            now = time.monotonic()
            samples = np.abs(np.frombuffer(event.frame.data, np.int16))
            at = int(samples.argmax())
            if samples[at] > 3000 and samples[at] > best[0]:
                best = (samples[at], now - (len(samples) - at) / RATE)
            if best[0] and now - best[1] > 0.5:  # the click is over
                times.append(best[1])
                best = (0.0, 0.0)
            if now > end:
                return

    await listen()
    await stream.aclose()
    return times


def pair_delays(direct: list[float], relayed: list[float]) -> dict[float, float]:
    """Each relayed click against the direct click it came from (the latest one before it), keyed by
    the direct click's time."""
    delays = {}
    for t in relayed:
        earlier = [d for d in direct if d <= t]
        if earlier and t - earlier[-1] < 0.9:
            delays[earlier[-1]] = t - earlier[-1]
    return delays


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lkplug", *args]


def env_for(server) -> dict:
    return {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "LIVEKIT_ROOM": "test",
    }


async def relays_at_once(server, listener: Peer, relays: dict, seconds: float) -> dict[str, dict]:
    """Clicks heard straight from alice and through each relay at the same time: ``relays`` maps a
    name to (command, identity), the command republishing alice as that identity. Running them
    together puts the machine's load of the moment on all of them alike. Returns, per name, the
    delay over the direct path of each click (keyed by the direct click's time)."""
    processes = [subprocess.Popen(command, env=env_for(server)) for command, _ in relays.values()]
    try:
        tracks = [await listener.remote_track(identity, timeout=30) for _, identity in relays.values()]
        direct = await listener.remote_track("alice")
        heard = await asyncio.gather(*(click_times(track, seconds) for track in [direct, *tracks]))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.get_running_loop().run_in_executor(None, process.wait)
    await asyncio.sleep(1.0)  # the relays' tracks are gone before the next run
    return {name: pair_delays(heard[0], relayed) for name, relayed in zip(relays, heard[1:], strict=True)}


def cpu_seconds(command: list[str], env: dict) -> float:
    """User + system CPU of a child process, from the kernel's accounting."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[2:4]} exited with {process.returncode}")
    return usage.ru_utime + usage.ru_stime


async def cpu_per_stream(server, streams: int, seconds: float) -> tuple[float, float]:
    """CPU seconds per second of media for lkplug (gain + resample, one WAV file per stream) and for
    the bare SDK (subscribe at its default frame size, discard), each receiving ``streams``
    publishers at once; the two run at the same time, so the machine's load falls on both alike."""
    publishers = []
    for index in range(streams):
        peer = await Peer.join(server.url, server.token(f"guest-{index}"))
        await peer.publish_sine(300 + 100 * index)
        publishers.append(peer)
    loop = asyncio.get_running_loop()
    folder = tempfile.mkdtemp(prefix="lkplug-bench-")
    record = ["--sink", f"wav:{folder}/{{identity}}.wav", "-t", str(seconds)]
    lkplug = cli("run", "--source", "track:guest-*,wait=1", *CHAIN, *record)
    sdk = [sys.executable, str(HERE / "sdk_peer.py"), "record", server.url]
    sdk += [server.token("bare-sdk"), "guest-", str(seconds), str(streams)]
    try:
        ours, bare = await asyncio.gather(
            loop.run_in_executor(None, cpu_seconds, lkplug, env_for(server)),
            loop.run_in_executor(None, cpu_seconds, sdk, env_for(server)),
        )
    finally:
        for peer in publishers:
            await peer.close()
    return ours / seconds, bare / seconds


async def main(runs: int, seconds: float, counts: list[int], only: str, chain: list[str]) -> None:
    server = await DevServerProcess().start()
    try:
        if only in ("", "latency"):
            await latency(server, runs, seconds, chain)
        if only in ("", "cpu"):
            await cpu(server, counts, seconds, runs)
    except BaseException:
        print("\n".join(server.lines[-30:]), file=sys.stderr)
        raise
    finally:
        await server.stop()


async def latency(server, runs: int, seconds: float, chain: list[str]) -> None:
    joins = []
    for index in range(runs):
        peer, took = await timed_join(server, f"joiner-{index}")
        joins.append(took)
        await peer.close()
    print(f"join (connect until joined)         {median_ms(joins)}")

    alice = await Peer.join(server.url, server.token("alice"))
    await alice.publish_sine(impulses=True)
    firsts = [await first_frame(server, f"first-{index}") for index in range(runs)]
    print(f"first frame (join start to sound)   {median_ms(firsts)}")

    bob = await Peer.join(server.url, server.token("bob"))
    bare, ours, differences = [], [], []
    for run in range(runs):
        sdk = [sys.executable, str(HERE / "sdk_peer.py"), "relay", server.url]
        sdk += [server.token(f"bare-relay-{run}"), "alice", str(seconds + 30)]
        lkplug = [
            "run",
            "--identity",
            "lkplug",
            "--source",
            "track:alice",
            *chain,
            "--sink",
            "track:processed",
        ]
        relays = {"bare": (sdk, f"bare-relay-{run}"), "lkplug": (cli(*lkplug), "lkplug")}
        heard = await relays_at_once(server, bob, relays, seconds)
        both = sorted(set(heard["bare"]) & set(heard["lkplug"]))
        bare += heard["bare"].values()
        ours += heard["lkplug"].values()
        differences += [heard["lkplug"][t] - heard["bare"][t] for t in both]
        print(
            f"  run {run + 1}: bare SDK {summary_ms(heard['bare'].values())}, lkplug "
            f"{summary_ms(heard['lkplug'].values())}, lkplug - bare per click "
            f"{summary_ms([heard['lkplug'][t] - heard['bare'][t] for t in both])}   "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(f"relay through the bare SDK, extra   {median_ms(bare)}")
    print(f"relay through lkplug, extra         {median_ms(ours)}  ({' '.join(chain[1::2])})")
    print(f"  lkplug's relay adds               {median_ms(differences)} (per click, same click)")
    await bob.close()
    await alice.close()


async def cpu(server, counts: list[int], seconds: float, runs: int) -> None:
    figures = {}
    for streams in counts:
        measured = []
        for _ in range(runs):
            ours, bare = await cpu_per_stream(server, streams, seconds)
            measured.append((ours, bare))
            print(
                f"  {streams} stream(s): lkplug {ours * 100:5.1f} %, bare SDK {bare * 100:5.1f} % "
                f"({ours / bare:.2f}x)   load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        figures[streams] = tuple(statistics.median(m[i] for m in measured) for i in (0, 1))
    for streams, (ours, bare) in figures.items():
        print(
            f"CPU, {streams} recorded stream(s), median of {runs}  lkplug {ours * 100:5.1f} % of a core, "
            f"bare SDK {bare * 100:5.1f} % ({ours / bare:.2f}x; per stream "
            f"{ours / streams * 100:.1f} % vs {bare / streams * 100:.1f} %)   load {os.getloadavg()[0]:.2f}"
        )
    low, high = min(counts), max(counts)
    if high > low:
        for name, index in (("lkplug", 0), ("bare SDK", 1)):
            marginal = (figures[high][index] - figures[low][index]) / (high - low)
            base = figures[low][index] - low * marginal
            print(
                f"  each extra stream                 {name} {marginal * 100:5.1f} % of a core: "
                f"~{int((1 - base) / marginal)} streams per core (estimate, the process only)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--streams", default="1,8", help="concurrent recorded streams for the CPU figures")
    parser.add_argument("--only", choices=("latency", "cpu"), default="", help="one part of the bench")
    parser.add_argument(
        "--relay-proc",
        action="append",
        help="the relay's processors (default gain:db=-6; e.g. resample:rate=16000 adds soxr's filter delay)",
    )
    args = parser.parse_args()
    chain = [word for proc in args.relay_proc or ["gain:db=-6"] for word in ("--proc", proc)]
    counts = [int(n) for n in args.streams.split(",")]
    asyncio.run(main(args.runs, args.seconds, counts, args.only, chain))
