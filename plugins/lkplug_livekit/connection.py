"""One room connection per run, shared by lkplug's track sources and sinks.

lkplug mints its own token with only the grants the pipeline needs: subscribe for a source, publish for
a sink (a publishing-only participant that can subscribe is what gets GStreamer's LiveKit sink dropped).
Secrets never appear in messages.

Each process joins under its own identity unless ``--identity`` names one: LiveKit lets one identity in
a room once, and a second process under the same name replaces the first (which is told so: the
components then fail with the ``--identity`` hint instead of ending early or retrying forever).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets

from lkplug import MediaError, UsageError

from .devserver import server_errors

SHARED_KEY = "livekit.connection"
CONNECT_TIMEOUT = 20.0
DISCONNECT_TIMEOUT = 5.0


class RoomConnection:
    """Connects at the first ``acquire`` (after every component said what it needs) and disconnects
    when the last user releases it."""

    def __init__(self, options: dict, notify=lambda message: None):
        self._options = options
        self._notify = notify
        self.url = options.get("url")
        self.api_key = options.get("api_key")
        self.api_secret = options.get("api_secret") or options.get("api_secret_file")  # the file's text
        self.token = options.get("token")
        self.room_name = options.get("room")
        self.identity = options.get("identity")  # None: one of our own, made when joining
        self.devserver = None  # with --devserver: the local server this run started
        self.can_subscribe = False
        self.can_publish = False
        self.room = None
        self.lost: MediaError | None = None  # set when the server ends our session (e.g. replaced)
        self.reconnecting = False  # the SDK lost the server and is trying to get back
        self._listeners: list = []  # called when ``lost`` is set
        self._users = 0
        self._lock = asyncio.Lock()

    @classmethod
    def shared(cls, context) -> RoomConnection:
        connection = context.shared.get(SHARED_KEY)
        if connection is None:
            connection = context.shared[SHARED_KEY] = cls(context.options, context.notify)
        return connection

    def check(self) -> None:
        """Fail before anything runs when the settings cannot work."""
        if self.wants_devserver:
            return
        if not self.url:
            raise UsageError("no LiveKit server: give --url or set LIVEKIT_URL (e.g. ws://127.0.0.1:7880)")
        if not self.token:
            if not (self.api_key and self.api_secret):
                raise UsageError(
                    "no credentials: give --token, or --api-key and --api-secret "
                    "(or LIVEKIT_API_KEY and LIVEKIT_API_SECRET)"
                )
            if not self.room_name:
                raise UsageError("no room: give --room NAME (or set LIVEKIT_ROOM)")

    def on_lost(self, callback) -> None:
        """``callback()`` runs when the server ends lkplug's session (``lost`` says why)."""
        self._listeners.append(callback)

    def role(self) -> str:
        if self.can_subscribe and self.can_publish:
            return "relay"
        return "publisher" if self.can_publish else "recorder"

    def describe(self) -> str:
        grants = [g for g, on in (("subscribe", self.can_subscribe), ("publish", self.can_publish)) if on]
        room = self.room_name or "(from token)"
        return f"room {room} at {self.url} as {self.identity!r}, grants: {', '.join(grants) or 'none'}"

    def mint_token(self) -> str:
        from livekit import api

        grants = api.VideoGrants(
            room_join=True,
            room=self.room_name,
            can_subscribe=self.can_subscribe,
            can_publish=self.can_publish,
            can_publish_data=False,
        )
        return (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(self.identity)
            .with_name(self.identity)
            .with_grants(grants)
            .with_ttl(datetime.timedelta(hours=6))
            .to_jwt()
        )

    @property
    def wants_devserver(self) -> bool:
        return self.devserver is not None or self._options.get("devserver", False)

    async def _start_devserver(self) -> None:
        """``--devserver``: the demo room of a local dev server (a child process, stopped at the end)."""
        from .devserver.process import DevServerProcess

        try:
            self.devserver = await DevServerProcess(demo=True).start()
        except RuntimeError as exc:
            raise MediaError(str(exc)) from None
        self.url, self.room_name, self.token = self.devserver.url, self.devserver.room, None
        self.api_key, self.api_secret = self.devserver.api_key, self.devserver.api_secret
        self._notify(f"started a local dev server at {self.url}, room {self.room_name!r}")

    async def acquire(self):
        from livekit import rtc

        async with self._lock:
            self._users += 1
            if self.room is None:
                if self.wants_devserver and self.devserver is None:
                    await self._start_devserver()
                self.check()
                quiet_sdk_logs()
                if not self.identity:
                    # readable and unique per process: two recorders in one room must not replace
                    # each other (a ready --token carries its own identity)
                    self.identity = f"lkplug-{self.role()}-{secrets.token_hex(2)}"
                if not self.token:
                    self._notify(f"joining room {self.room_name} as {self.identity!r}")
                room = rtc.Room()
                room.on("disconnected", self._on_disconnected)
                room.on("reconnecting", lambda: setattr(self, "reconnecting", True))
                room.on("reconnected", lambda: setattr(self, "reconnecting", False))
                try:
                    await asyncio.wait_for(
                        room.connect(
                            self.url, self.token or self.mint_token(), rtc.RoomOptions(auto_subscribe=False)
                        ),
                        CONNECT_TIMEOUT,
                    )
                except (rtc.ConnectError, asyncio.TimeoutError, OSError) as exc:
                    self._users -= 1
                    if self.devserver is not None:
                        await self.devserver.stop()
                    reason = getattr(exc, "message", None) or str(exc) or "timed out"
                    raise MediaError(f"cannot join {self.describe()}: {_redact(reason, self)}") from None
                except BaseException:  # stopped (Ctrl-C, SIGTERM) while joining: no dev server left
                    self._users -= 1
                    if self.devserver is not None:
                        await asyncio.shield(self.devserver.stop())
                    raise
                self.room = room
            return self.room

    def _on_disconnected(self, reason) -> None:
        from livekit import rtc

        if self.room is None:  # our own disconnect, at the end
            return
        who = f"room {self.room_name or self.room.name} as {self.identity!r}"
        if reason == rtc.DisconnectReason.DUPLICATE_IDENTITY:
            self.lost = MediaError(
                f"another participant joined {who} and replaced lkplug; "
                "give each process its own identity (--identity NAME, or leave it out for a unique one)"
            )
        elif self.reconnecting and reason == rtc.DisconnectReason.UNKNOWN_REASON:
            # the SDK gave up reconnecting: the server went away, it did not end the session
            self.lost = MediaError(f"{self.server_lost()} and could not get back (in {who})")
        elif reason != rtc.DisconnectReason.CLIENT_INITIATED:
            name = rtc.DisconnectReason.Name(reason).lower().replace("_", " ")
            self.lost = MediaError(f"the server ended lkplug's session in {who}: {name}")
        else:
            return
        for callback in self._listeners:
            callback()

    def server_lost(self) -> str:
        return f"lost the connection to the LiveKit server at {self.url}"

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self.room is not None:
                room, self.room = self.room, None
                try:
                    # bounded: after the server ended the session (a namesake replaced us) the SDK's
                    # disconnect has once not returned, and the run, its outputs closed, hung there
                    await asyncio.wait_for(room.disconnect(), DISCONNECT_TIMEOUT)
                except asyncio.TimeoutError:
                    self._notify(f"warning: leaving room {room.name} took over {DISCONNECT_TIMEOUT:g} s")
            if self._users <= 0 and self.devserver is not None:
                devserver = self.devserver
                output = devserver.process.stdout if devserver.process is not None else None
                await devserver.stop()
                for _ in range(50):  # let its reader take the last lines
                    if output is None or output.at_eof():
                        break
                    await asyncio.sleep(0.02)
                for error in server_errors(devserver.lines):
                    # a fault of the dev server, not of the run: say so (the tests look for it)
                    self._notify("warning: the dev server logged an error:\n" + error)


def quiet_sdk_logs() -> None:
    """The SDK's own log lines (its Rust core's included: 401 handshakes, reconnects, "v1 path not
    found") only with ``--debug``, which configures logging; otherwise lkplug's one-line messages say
    what matters."""
    sdk = logging.getLogger("livekit")
    if not sdk.handlers:
        sdk.addHandler(logging.NullHandler())  # no "last resort" printing to stderr either
    if logging.getLogger().handlers:  # --debug
        sdk.setLevel(logging.INFO)
        sdk.propagate = True
    else:
        sdk.setLevel(logging.CRITICAL)
        sdk.propagate = False


def _redact(text: str, connection: RoomConnection) -> str:
    for secret in (connection.api_secret, connection.token):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())
