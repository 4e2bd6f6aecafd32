"""Live figures on the local dev server (issues 4 and 5): join time, first-frame time, end-to-end audio
latency, the latency lkplug's chain adds against a bare-SDK relay, and CPU per recorded live stream
(gain + resample to 16 kHz + a WAV file per stream) against the bare SDK's subscriber at its default
frame size, for 1 and 8 concurrent streams.

    python bench/live_latency.py [--runs 5] [--seconds 10] [--streams 1,8] [--only cpu]

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
CHAIN = ["--proc", "gain:db=-6", "--proc", "resample:rate=16000"]


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


def pair_delays(direct: list[float], relayed: list[float]) -> list[float]:
    """Each relayed click against the direct click it came from (the latest one before it)."""
    delays = []
    for t in relayed:
        earlier = [d for d in direct if d <= t]
        if earlier and t - earlier[-1] < 0.9:
            delays.append(t - earlier[-1])
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


async def relay_delay(server, listener: Peer, command: list[str], identity: str, seconds: float):
    """Clicks heard straight from alice and through ``command`` (which republishes her)."""
    process = subprocess.Popen(command, env=env_for(server))
    try:
        relayed = await listener.remote_track(identity, timeout=30)
        direct = await listener.remote_track("alice")
        heard_direct, heard_relayed = await asyncio.gather(
            click_times(direct, seconds), click_times(relayed, seconds)
        )
    finally:
        process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, process.wait)
    await asyncio.sleep(1.0)  # the relay's track is gone before the next one
    return pair_delays(heard_direct, heard_relayed)


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
    publishers at once."""
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
        ours = await loop.run_in_executor(None, cpu_seconds, lkplug, env_for(server))
        bare = await loop.run_in_executor(None, cpu_seconds, sdk, env_for(server))
    finally:
        for peer in publishers:
            await peer.close()
    return ours / seconds, bare / seconds


async def main(runs: int, seconds: float, counts: list[int], only: str) -> None:
    server = await DevServerProcess().start()
    try:
        if only in ("", "latency"):
            await latency(server, runs, seconds)
        if only in ("", "cpu"):
            await cpu(server, counts, seconds)
    except BaseException:
        print("\n".join(server.lines[-30:]), file=sys.stderr)
        raise
    finally:
        await server.stop()


async def latency(server, runs: int, seconds: float) -> None:
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
    sdk = [sys.executable, str(HERE / "sdk_peer.py"), "relay", server.url]
    sdk += [server.token("bare-relay"), "alice", str(seconds + 20)]
    ours = cli("run", "--source", "track:alice", *CHAIN, "--sink", "track:processed")
    bare_delays = await relay_delay(server, bob, sdk, "bare-relay", seconds)
    our_delays = await relay_delay(server, bob, ours, "lkplug", seconds)
    print(f"relay through the bare SDK, extra   {median_ms(bare_delays)}")
    print(f"relay through lkplug, extra         {median_ms(our_delays)}")
    added = statistics.median(our_delays) - statistics.median(bare_delays)
    print(f"  lkplug's chain adds               {added * 1000:7.1f} ms (gain + resample to 16 kHz)")
    await bob.close()
    await alice.close()


async def cpu(server, counts: list[int], seconds: float) -> None:
    figures = {streams: await cpu_per_stream(server, streams, seconds) for streams in counts}
    for streams, (ours, bare) in figures.items():
        print(
            f"CPU, {streams} recorded stream(s)         lkplug {ours * 100:5.1f} % of a core, "
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
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.seconds, [int(n) for n in args.streams.split(",")], args.only))
