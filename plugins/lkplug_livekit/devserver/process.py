"""The dev server in a child process: what the pytest fixture and ``lkplug run --devserver`` use.

Its own process matters: aiortc decodes and encodes every stream in Python, and sharing an event loop
(and the GIL) with the SDK participants of a test starves it into dropouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import aiohttp

from .cli import DEFAULT_KEY, DEFAULT_SECRET
from .server import make_token

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevServerProcess:
    """``await DevServerProcess().start()``; ``url``, ``api_key``, ``api_secret``, ``token()``,
    fault injection (``drop_signal``, ``restart``) and ``stop()``."""

    def __init__(
        self, demo: bool = False, room: str = "demo", api_key=DEFAULT_KEY, api_secret=DEFAULT_SECRET
    ):
        self.demo, self.room = demo, room
        self.api_key, self.api_secret = api_key, api_secret
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []  # what the server printed (its log goes to stderr, kept for failures)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, identity: str, room: str = "test", **grants) -> str:
        return make_token(self.api_key, self.api_secret, identity, room, **grants)

    async def start(self) -> DevServerProcess:
        self.port = free_port()
        args = ["--port", str(self.port), "--api-key", self.api_key, "--api-secret", self.api_secret, "-q"]
        if self.demo:
            args += ["--demo", "--room", self.room]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lkplug_livekit.devserver",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await asyncio.wait_for(self._until_ready(), START_TIMEOUT)
        except (asyncio.TimeoutError, EOFError):
            await self.stop()
            last = self.lines[-1] if self.lines else "no output"
            raise RuntimeError(f"the dev server did not start: {last}") from None
        asyncio.ensure_future(self._drain())
        return self

    async def _until_ready(self) -> None:
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise EOFError
            self.lines.append(line.decode(errors="replace").rstrip())
            if self.lines[-1] == "ready":
                return

    async def _drain(self) -> None:
        """Keep reading the server's output so it never blocks on a full pipe."""
        with contextlib.suppress(Exception):
            while line := await self.process.stdout.readline():
                self.lines.append(line.decode(errors="replace").rstrip())

    async def _admin(self, path: str) -> None:
        headers = {"Authorization": "Bearer " + self.token("lkplug-admin", room_admin=True)}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{self.port}{path}", headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"dev server: {path}: {response.status} {await response.text()}")

    async def drop_signal(self, identity: str) -> None:
        """Close ``identity``'s signalling socket, as a network failure would."""
        await self._admin(f"/devserver/drop_signal/{identity}")

    async def restart(self) -> None:
        """Every client loses its connection; the server is back on the same port."""
        await self._admin("/devserver/restart")
        await asyncio.sleep(0.5)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
