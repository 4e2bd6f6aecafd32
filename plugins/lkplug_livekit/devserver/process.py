"""The dev server in a child process: what the pytest fixture and ``lkplug run --devserver`` use.

Its own process matters: aiortc decodes and encodes every stream in Python, and sharing an event loop
(and the GIL) with the SDK participants of a test starves it into dropouts.

The child is in the parent's process group (a Ctrl-C in the terminal reaches both) and ends with its
parent whatever happens to it (see ``cli._end_with_parent``). The API secret reaches it through its
environment, never its command line (which every local user can read with ``ps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys

import aiohttp

from .cli import DEFAULT_KEY, PARENT_ENV
from .server import make_token

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevServerProcess:
    """``await DevServerProcess().start()``; ``url``, ``api_key``, ``api_secret``, ``token()``,
    fault injection (``drop_signal``, ``restart``) and ``stop()``. Without ``api_secret``, a random one.
    ``quiet=False``: ``lines`` hold its log of joins, subscriptions and publishes too."""

    def __init__(
        self,
        demo: bool = False,
        room: str = "demo",
        api_key: str = DEFAULT_KEY,
        api_secret: str | None = None,
        departure_timeout: float | None = None,
        quiet: bool = True,
        port: int = 0,
    ):
        self.demo, self.room = demo, room
        self.api_key, self.api_secret = api_key, api_secret or secrets.token_urlsafe(24)
        self.departure_timeout = departure_timeout
        self.quiet = quiet
        self.port = port  # 0: the server takes a free one and says which (read from its output)
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []  # what the server printed (its log goes to stderr, kept for failures)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, identity: str, room: str = "test", **grants) -> str:
        return make_token(self.api_key, self.api_secret, identity, room, **grants)

    async def start(self) -> DevServerProcess:
        args = ["--port", str(self.port), "--api-key", self.api_key] + (["-q"] if self.quiet else [])
        if self.demo:
            args += ["--demo", "--room", self.room]
        if self.departure_timeout is not None:
            args += ["--departure-timeout", str(self.departure_timeout)]
        env = {**os.environ, "LIVEKIT_API_SECRET": self.api_secret, PARENT_ENV: str(os.getpid())}
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lkplug_livekit.devserver",
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            await asyncio.wait_for(self._until_ready(), START_TIMEOUT)
        except (asyncio.TimeoutError, EOFError):
            cause = self._cause()
            await self.stop()
            raise RuntimeError(f"the dev server did not start: {cause}") from None
        except BaseException:  # cancelled (Ctrl-C, SIGTERM) while starting: no child left behind
            await asyncio.shield(self.stop())
            raise
        asyncio.ensure_future(self._drain())
        return self

    def _cause(self) -> str:
        """Why the child failed, from what it printed: its error line (click prints ``Error: …``),
        else its last line; never the secret."""
        errors = [line for line in self.lines if line.startswith(("Error:", "RuntimeError", "OSError"))]
        cause = (errors or self.lines or ["no output, timed out"])[-1]
        cause = cause.removeprefix("Error: ").replace(self.api_secret, "***")
        code = self.process.returncode if self.process is not None else None
        return cause if code is None else f"{cause} (exit status {code})"

    async def _until_ready(self) -> None:
        while True:
            line = await self.process.stdout.readline()
            if not line:
                await self.process.wait()
                raise EOFError
            self.lines.append(line.decode(errors="replace").rstrip())
            if self.lines[-1].strip().startswith("LIVEKIT_URL=ws://127.0.0.1:"):
                self.port = int(self.lines[-1].rsplit(":", 1)[1])  # the one it bound (asked 0: any)
            if self.lines[-1] == "ready":
                return

    async def _drain(self) -> None:
        """Keep reading the server's output so it never blocks on a full pipe (the last 200 lines
        are kept, for failures)."""
        with contextlib.suppress(Exception):
            while line := await self.process.stdout.readline():
                self.lines = [*self.lines[-199:], line.decode(errors="replace").rstrip()]

    async def _admin(self, path: str, room: str | list[str]) -> None:
        headers = {"Authorization": "Bearer " + self.token("lkplug-admin", room, room_admin=True)}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{self.port}{path}", headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"dev server: {path}: {response.status} {await response.text()}")

    async def drop_signal(self, identity: str, room: str = "test") -> None:
        """Close ``identity``'s signalling socket, as a network failure would."""
        await self._admin(f"/devserver/drop_signal/{identity}?room={room}", room)

    async def restart(self, room: str = "test") -> None:
        """Every client loses its connection and session; the server is back on the same port.
        (Needs room_admin of every room in use: ``room`` is the one the test uses.)"""
        await self._admin("/devserver/restart", room)
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
