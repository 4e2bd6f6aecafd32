"""CPU of a room mix per stream: lkplug recording ``track:*`` through ``mix`` on the local dev server
with 1 and with N publishers (the real SDK), the child's CPU time read from getrusage. The difference
over the extra streams is the cost of one stream; start-up and joining cancel out.

    python bench/room_mix.py --publishers 8 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile

from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import DevServerProcess


async def one_run(publishers: int, seconds: float, layout: str) -> float:
    """lkplug's CPU seconds for ``seconds`` of a mix of ``publishers`` sines."""
    server = await DevServerProcess().start()
    peers = []
    try:
        for index in range(publishers):
            # publishers only (they do not subscribe to each other): the server relays N streams, not N²
            peer = await Peer.join(server.url, server.token(f"guest-{index}", "bench"), auto_subscribe=False)
            await peer.publish_sine(300 + 100 * index)
            peers.append(peer)
        env = {
            **os.environ,
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": server.api_key,
            "LIVEKIT_API_SECRET": server.api_secret,
            "LIVEKIT_ROOM": "bench",
        }
        with tempfile.TemporaryDirectory() as folder:
            args = ["--source", "track:*", "--proc", layout, "--sink", f"wav:{folder}/mix.wav"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lkplug", "run", *args, "-t", str(seconds), "-q", env=env
            )
            await process.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            raise SystemExit(f"lkplug exited with {process.returncode}")
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    finally:
        for peer in peers:
            await peer.close()
        await server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layout", default="mix")
    args = parser.parse_args()
    one = await one_run(1, args.seconds, args.layout)
    many = await one_run(args.publishers, args.seconds, args.layout)
    per_stream = (many - one) / (args.publishers - 1) / args.seconds
    print(
        f"lkplug CPU for {args.seconds:g} s: 1 publisher {one:.2f} s,"
        f" {args.publishers} publishers {many:.2f} s"
    )
    print(f"per extra stream: {100 * per_stream:.1f} % of one core; load average {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()
    os._exit(0)  # skip the SDK runtime's teardown at exit (see lkplug.cli.console)


if __name__ == "__main__":
    asyncio.run(main())
