"""Fixtures for testing against a local LiveKit-protocol server. Opt in from a conftest.py::

    pytest_plugins = ["lkplug_livekit.devserver.pytest_plugin"]

    async def test_hears_alice(livekit_server, livekit_join):
        alice = await livekit_join("alice")
        await alice.publish_sine(440)
        bob = await livekit_join("bob")
        audio = await bob.receive_audio("alice", seconds=1.0)

``livekit_server`` is the dev server in a child process on a free port of 127.0.0.1 (``url``, ``api_key``,
``api_secret`` (random), ``token(identity, room=..., **grants)``, ``drop_signal(identity, room="test")``:
the participant resumes, ``restart(room="test")``: every session is lost);
``livekit_join(identity, room="test", auto_subscribe=True, **grants)`` returns a joined :class:`Peer`.
Everything is shut down after the test, and the test fails if the server's log holds a traceback.
"""

from __future__ import annotations

import asyncio

import pytest_asyncio

from . import server_errors
from .peers import Peer
from .process import DevServerProcess


@pytest_asyncio.fixture
async def livekit_server():
    """The server; a test fails when the server's log shows a traceback, whatever the test checked."""
    server = await DevServerProcess().start()
    output = server.process.stdout
    try:
        yield server
    finally:
        await server.stop()
    for _ in range(50):  # let the reader of its output take the last lines
        if output.at_eof():
            break
        await asyncio.sleep(0.02)
    errors = server_errors(server.lines)
    assert not errors, "the dev server logged tracebacks:\n" + "\n---\n".join(errors)


@pytest_asyncio.fixture
async def livekit_join(livekit_server):
    peers: list[Peer] = []

    async def join(identity: str, room: str = "test", auto_subscribe: bool = True, **grants) -> Peer:
        peer = await Peer.join(
            livekit_server.url, livekit_server.token(identity, room, **grants), auto_subscribe
        )
        peers.append(peer)
        return peer

    try:
        yield join
    finally:
        for peer in reversed(peers):
            await peer.close()
