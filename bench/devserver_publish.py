"""Memory of the dev server while lkplug publishes a file into it (issue 17): `lkplug devserver --demo`,
then `lkplug run --source file:FILE --sink track:talk` into the demo's room. Nobody subscribes; with
``--listen`` one SDK participant subscribes to the audio; with ``--watch`` to the video as well (reading
every frame). Prints the server's RSS and CPU time every 5 s while the file plays and for ``--after``
seconds after lkplug ended, and what the listener read.

    python bench/devserver_publish.py clip720p.mp4 [--listen | --watch] [--after 30]
    # another checkout's server, e.g. before a change:
    python bench/devserver_publish.py clip720p.mp4 --watch --server-path /work/main/plugins:/work/main/core

Linux only (reads /proc/PID/status).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time

from devserver_soak import cpu_seconds, rss_mb
from livekit import rtc

from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import free_port
from lkplug_livekit.devserver.server import make_token


async def main(path: str, listen: bool, watch: bool, after: float, server_path: str | None) -> None:
    port, secret = free_port(), secrets.token_urlsafe(24)
    env = {**os.environ, "LIVEKIT_API_SECRET": secret}
    server_env = {**env, "PYTHONPATH": server_path} if server_path else env
    args = [sys.executable, "-m", "lkplug_livekit.devserver", "-q", "--port", str(port), "--demo"]
    server = await asyncio.create_subprocess_exec(*args, env=server_env, stdout=asyncio.subprocess.PIPE)
    while (await server.stdout.readline()).strip() != b"ready":
        pass
    url = f"ws://127.0.0.1:{port}"
    lkplug_env = {**env, "LIVEKIT_URL": url, "LIVEKIT_API_KEY": "devkey", "LIVEKIT_ROOM": "demo"}
    listener, readers, read = None, [], {}
    started = time.monotonic()

    def sample(what: str) -> None:
        rss, cpu = rss_mb(server.pid), cpu_seconds(server.pid)
        print(
            f"{time.monotonic() - started:6.1f} s  server RSS {rss:7.1f} MB  CPU {cpu:6.1f} s  {what}",
            flush=True,
        )

    try:
        sample("before")
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lkplug",
            "run",
            "--source",
            f"file:{path}",
            "--sink",
            "track:talk",
            env=lkplug_env,
        )
        if listen:
            listener = await Peer.join(url, make_token("devkey", secret, "listener", "demo"), False)
            who = await identity_of_talk(listener)
            track = await listener.remote_track(who, "audio", timeout=30)
            streams = [rtc.AudioStream(track, sample_rate=48000, num_channels=1)]
            if watch:
                streams.append(rtc.VideoStream(await listener.remote_track(who, "video")))
            readers = [asyncio.create_task(drain(stream, read)) for stream in streams]
        while run.returncode is None:
            try:
                await asyncio.wait_for(run.wait(), 5)
            except asyncio.TimeoutError:
                pass
            sample("lkplug publishing" if run.returncode is None else f"lkplug ended ({run.returncode})")
        ended = time.monotonic()
        while time.monotonic() - ended < after:
            await asyncio.sleep(5)
            sample("after")
    finally:
        if listener is not None:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await listener.close()
            print(f"the listener read {read}")
        server.terminate()
        await server.wait()


async def identity_of_talk(peer: Peer, timeout: float = 30) -> str:
    """The identity of whoever publishes a track named "talk" (lkplug's is made up per run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for participant in peer.room.remote_participants.values():
            if any(p.name == "talk" for p in participant.track_publications.values()):
                return participant.identity
        await asyncio.sleep(0.2)
    raise TimeoutError("no track 'talk' published")


async def drain(stream, read: dict) -> None:
    """Read every frame; ``read``: frames by kind and size (e.g. "video 1280x720")."""
    async for event in stream:
        frame = event.frame
        kind = f"video {frame.width}x{frame.height}" if hasattr(frame, "width") else "audio"
        read[kind] = read.get(kind, 0) + 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--listen", action="store_true", help="one participant subscribes to the audio")
    parser.add_argument("--watch", action="store_true", help="and to the video (reading every frame)")
    parser.add_argument("--after", type=float, default=30, help="seconds sampled after lkplug ended")
    parser.add_argument("--server-path", help="PYTHONPATH for the dev server (another checkout)")
    options = parser.parse_args()
    asyncio.run(
        main(options.path, options.listen or options.watch, options.watch, options.after, options.server_path)
    )
