"""Memory of the dev server over a long run (issue 17): `lkplug devserver --demo` (alice publishes a
tone and colour bars), nobody subscribed for the first half, then one subscriber reading both tracks.
Prints the server's RSS and CPU time every 30 s and its growth after the first minute (the goal: under
10 MB).

    python bench/devserver_soak.py [--seconds 600] [--sdk-publisher]

``--sdk-publisher``: alice is an SDK participant in this process instead of the server's demo
participant, so that the server receives and (once subscribed) decodes her media.
    # the code of another checkout, e.g. before a change (it took the secret in argv then):
    PYTHONPATH=/work/main/plugins:/work/main/core python bench/devserver_soak.py --seconds 120 --argv-secret

Linux only (reads /proc/PID/status).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time

from livekit import rtc

from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import free_port
from lkplug_livekit.devserver.server import make_token


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_all(peer: Peer, counts: dict) -> None:
    """Subscribe to alice's tracks and read every frame (a subscriber that keeps up)."""
    audio = await peer.remote_track("alice", "audio", timeout=30)
    video = await peer.remote_track("alice", "video", timeout=30)

    async def drain(stream, kind):
        async for _ in stream:
            counts[kind] += 1

    await asyncio.gather(
        drain(rtc.AudioStream(audio, sample_rate=48000, num_channels=1), "audio"),
        drain(rtc.VideoStream(video), "video"),
    )


async def main(seconds: float, argv_secret: bool, sdk_publisher: bool) -> None:
    port, secret = free_port(), secrets.token_urlsafe(24)
    args = [sys.executable, "-m", "lkplug_livekit.devserver", "-q", "--port", str(port)]
    args += ["--api-secret", secret] if argv_secret else []
    args += [] if sdk_publisher else ["--demo"]
    server = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, "LIVEKIT_API_SECRET": secret}, stdout=asyncio.subprocess.PIPE
    )
    while (await server.stdout.readline()).strip() != b"ready":
        pass
    alice = None
    if sdk_publisher:
        alice = await Peer.join(
            f"ws://127.0.0.1:{port}", make_token("devkey", secret, "alice", "demo"), False
        )
        await alice.publish_sine(440)
        await alice.publish_bars()
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    subscriber, reader, counts = None, None, {"audio": 0, "video": 0}
    try:
        while (now := time.monotonic() - started) < seconds:
            if subscriber is None and now >= seconds / 2:
                token = make_token("devkey", secret, "listener", "demo")
                subscriber = await Peer.join(f"ws://127.0.0.1:{port}", token)
                reader = asyncio.create_task(read_all(subscriber, counts))
                print(f"{now:6.0f} s  a subscriber joins", flush=True)
            samples.append((now, rss_mb(server.pid)))
            cpu = cpu_seconds(server.pid)
            print(
                f"{now:6.0f} s  server RSS {samples[-1][1]:7.1f} MB  CPU {cpu:6.1f} s  frames read {counts}",
                flush=True,
            )
            await asyncio.sleep(30 - (time.monotonic() - started) % 30)
        samples.append((time.monotonic() - started, rss_mb(server.pid)))
    finally:
        if reader is not None:
            reader.cancel()
        for peer in (subscriber, alice):
            if peer is not None:
                await peer.close()
        server.terminate()
        await server.wait()
    after_minute = [rss for t, rss in samples if t >= 60]
    print(
        f"RSS at 60 s {after_minute[0]:.1f} MB, at the end {samples[-1][1]:.1f} MB, "
        f"peak {max(after_minute):.1f} MB"
    )
    print(
        f"growth after the first minute: {samples[-1][1] - after_minute[0]:+.1f} MB "
        f"(peak {max(after_minute) - after_minute[0]:+.1f} MB); frames read {counts}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--argv-secret", action="store_true", help="pass --api-secret (older checkouts)")
    parser.add_argument("--sdk-publisher", action="store_true", help="alice is an SDK participant here")
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.argv_secret, options.sdk_publisher))
