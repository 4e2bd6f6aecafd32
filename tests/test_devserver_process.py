"""The dev server as a process (issue 17): it listens on 127.0.0.1 only, keeps secrets out of
command lines and error messages, and never outlives the lkplug that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from asyncio.subprocess import PIPE

import pytest
import soundfile
from livekit import rtc
from sockets import command_line, listening_sockets, process_tree, processes_with_env

from lkplug_livekit.devserver import process as devserver_process
from lkplug_livekit.devserver.cli import PARENT_ENV
from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import DevServerProcess

pytestmark = [
    pytest.mark.live,
    pytest.mark.untimed,  # the server as a process: addresses, secrets, memory, exits
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
]


async def test_everything_the_dev_server_with_demo_listens_on_is_loopback():
    server = await DevServerProcess(demo=True).start()
    try:
        listener = await Peer.join(server.url, server.token("listener", "demo"))
        try:
            await listener.receive_audio("alice", seconds=1.0)  # media flowing: every socket is open
            await listener.receive_video("alice", frames=5)
            sockets = listening_sockets(server.process.pid)
        finally:
            await listener.close()
    finally:
        await server.stop()
    assert ("tcp", "127.0.0.1", server.port) in sockets  # the signalling server, found by this check
    assert [s for s in sockets if s[1] != "127.0.0.1"] == []


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


async def read_video_sizes(peer: Peer, identity: str, frames: int) -> set[tuple[int, int]]:
    """Read ``frames`` of ``identity``'s video as they come (no conversion); their sizes."""
    stream = rtc.VideoStream(await peer.remote_track(identity, "video", timeout=30))
    sizes, count = set(), 0
    try:
        async for event in stream:
            sizes.add((event.frame.width, event.frame.height))
            count += 1
            if count == frames:
                return sizes
    finally:
        await stream.aclose()
    return sizes


# with the timed live tests, not beside them: its 1280x720 video keeps a core busy (a second group's
# heavy starts beside the mix tests made three of them fail once: agents workers)
@pytest.mark.xdist_group("live")
async def test_a_watched_1280x720_video_costs_the_server_no_memory_per_frame():
    """The server forwards the frames a publisher sends as they are (an SFU): a subscriber watching
    1280x720 costs it neither a decoder nor an encoder. Before, it decoded and encoded again for each
    subscriber, and grew by about 3 MB/s while a 720p file played (bench/devserver_publish.py --watch:
    99 -> 260 MB, not coming down); issue 17's soak allows 10 MB in all."""
    server = await DevServerProcess().start()
    peers = []
    try:
        alice = await Peer.join(server.url, server.token("alice"))
        peers.append(alice)
        await alice.publish_bars(width=1280, height=720, fps=30)
        bob = await Peer.join(server.url, server.token("bob"))
        peers.append(bob)
        await asyncio.wait_for(read_video_sizes(bob, "alice", 30), 60)  # flowing, every buffer made
        before = rss_mb(server.process.pid)
        sizes = await asyncio.wait_for(read_video_sizes(bob, "alice", 300), 120)  # 10 s at 30 fps
        grown = rss_mb(server.process.pid) - before
    finally:
        for peer in peers:
            await peer.close()
        await server.stop()
    assert sizes == {(1280, 720)}
    assert grown < 10, f"the server grew {grown:.1f} MB over 300 frames"


@pytest.fixture(autouse=True)
def sigint_reaches_children():
    """A suite started in the background ignores SIGINT, and children inherit an ignored signal (a
    caught one is reset at exec): catch it here so that lkplug starts as from a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


async def _lkplug(*args, env=None):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkplug", *args, env={**os.environ, **(env or {})}, stdout=PIPE, stderr=PIPE
    )


async def _until_line(stream, text: str, timeout: float = 60) -> str:
    async def read():
        seen = []
        while line := await stream.readline():
            seen.append(line.decode())
            if text in seen[-1]:
                return "".join(seen)
        raise AssertionError(f"{text!r} never came: {''.join(seen)}")

    return await asyncio.wait_for(read(), timeout)


async def test_no_secret_on_a_command_line_during_run_devserver(tmp_path):
    process = await _lkplug("run", "--devserver", "--source", "track:alice", "--sink", "null", "-t", "30")
    try:
        await _until_line(process.stderr, "receiving alice")
        (child,) = processes_with_env(PARENT_ENV, str(process.pid))
        assert os.getpgid(child) == os.getpgid(process.pid)  # a Ctrl-C in a terminal reaches both
        with open(f"/proc/{child}/environ", "rb") as environ:
            variables = dict(v.split(b"=", 1) for v in environ.read().split(b"\0") if b"=" in v)
        secret = variables[b"LIVEKIT_API_SECRET"].decode()  # how the child gets it
        assert len(secret) >= 32
        for pid in process_tree(process.pid):
            assert secret not in command_line(pid)
    finally:
        process.send_signal(signal.SIGINT)
        await process.communicate()


@pytest.mark.parametrize("how", ["environment", "file"])
async def test_lkplug_devserver_takes_its_secret_from_the_environment_or_a_file(tmp_path, how):
    secret = "a-secret-" + "x" * 32
    env = {"LIVEKIT_API_SECRET": secret}
    args = ["devserver", "--port", "0", "-q"]
    if how == "file":
        (tmp_path / "secret").write_text(secret + "\n")
        args += ["--api-secret-file", str(tmp_path / "secret")]
        env = {"LIVEKIT_API_SECRET": ""}
    process = await _lkplug(*args, env=env)
    try:
        printed = await _until_line(process.stdout, "ready")
        url = next(line.split("=", 1)[1] for line in printed.splitlines() if "LIVEKIT_URL=" in line)
        assert secret not in printed and secret not in command_line(process.pid)
        from lkplug_livekit.devserver.server import make_token

        peer = await Peer.join(url, make_token("devkey", secret, "bob"))  # the secret given is the one
        await peer.close()
    finally:
        process.send_signal(signal.SIGINT)
        await process.communicate()
    assert process.returncode == 0


async def test_lkplug_devserver_prints_a_secret_only_when_it_made_it_up():
    process = await _lkplug("devserver", "--port", "0", "-q", env={"LIVEKIT_API_SECRET": ""})
    try:
        printed = await _until_line(process.stdout, "ready")
    finally:
        process.send_signal(signal.SIGINT)
        await process.communicate()
    (secret,) = [line.split("=", 1)[1] for line in printed.splitlines() if "LIVEKIT_API_SECRET=" in line]
    assert len(secret) >= 32 and printed.count(secret) == 1


async def test_a_failed_start_reports_its_cause_not_the_secret():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = DevServerProcess(port=taken.getsockname()[1])
        with pytest.raises(RuntimeError) as failed:
            await server.start()
    message = str(failed.value)
    assert message.startswith("the dev server did not start: cannot start the dev server:"), message
    assert "address already in use" in message, message
    assert server.api_secret not in message


async def test_a_port_taken_meanwhile_does_not_stop_the_start(monkeypatch):
    """Before: the parent probed a free port, closed it and the child bound it a second later: another
    process of a busy machine took it in between ("address already in use", seen with four test runs
    side by side). Here the port the parent would have probed is taken; the child chooses its own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(devserver_process, "free_port", lambda: taken.getsockname()[1])
        server = await DevServerProcess().start()
        try:
            assert server.port not in (0, taken.getsockname()[1])
            peer = await Peer.join(server.url, server.token("alice"))  # it serves on the port it says
            await peer.close()
        finally:
            await server.stop()


@pytest.mark.parametrize("sig, after", [(signal.SIGTERM, 0.3), (signal.SIGINT, 1.0), (signal.SIGTERM, None)])
async def test_no_dev_server_outlives_lkplug_run_devserver(tmp_path, sig, after):
    """A signal at a moment of the join (``after`` seconds), or once recording (None): the child ends
    with lkplug, and an output that exists is a valid file."""
    out = tmp_path / "out.wav"
    process = await _lkplug(
        "run", "--devserver", "--source", "track:alice", "--sink", f"wav:{out}", "-t", "30"
    )
    if after is None:
        await _until_line(process.stderr, "receiving alice")
        await asyncio.sleep(1)
    else:
        await asyncio.sleep(after)
    children = processes_with_env(PARENT_ENV, str(process.pid))
    process.send_signal(sig)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    for _ in range(50):  # the child ends by itself (it may take a moment to close)
        if not [pid for pid in children if os.path.exists(f"/proc/{pid}")]:
            break
        await asyncio.sleep(0.1)
    assert [pid for pid in children if os.path.exists(f"/proc/{pid}")] == [], err
    assert processes_with_env(PARENT_ENV, str(process.pid)) == []
    if out.exists():  # a valid WAV, its header finalised (libsndfile would read it either way)
        soundfile.read(out)
        raw = out.read_bytes()
        assert int.from_bytes(raw[4:8], "little") == len(raw) - 8
        data_at = raw.find(b"data")
        assert data_at + 8 + int.from_bytes(raw[data_at + 4 : data_at + 8], "little") == len(raw)


async def test_a_killed_lkplug_takes_its_dev_server_with_it():
    process = await _lkplug("run", "--devserver", "--source", "track:alice", "--sink", "null", "-t", "30")
    await _until_line(process.stderr, "receiving alice")
    (child,) = processes_with_env(PARENT_ENV, str(process.pid))
    process.kill()  # nothing of lkplug runs: the kernel tells the child (PR_SET_PDEATHSIG)
    await process.wait()
    for _ in range(100):
        if not os.path.exists(f"/proc/{child}"):
            break
        await asyncio.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}")


def test_lkplug_devserver_refuses_a_secret_on_its_command_line(lkplug_cli):
    result = lkplug_cli("devserver", "--api-secret", "x" * 32, "--port", "0")
    assert result.returncode == 2
    assert "Set LIVEKIT_API_SECRET or give --api-secret-file PATH" in result.stderr
    assert "ready" not in result.stdout


async def test_lkplug_run_takes_its_secret_from_a_file(livekit_server, livekit_join, tmp_path):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    (tmp_path / "secret").write_text(livekit_server.api_secret + "\n")
    process = await _lkplug(
        "run", "--url", livekit_server.url, "--api-key", livekit_server.api_key, "--room", "test",
        "--api-secret-file", str(tmp_path / "secret"), "--source", "track:alice", "--sink", "null", "-t", "1",
        env={"LIVEKIT_API_SECRET": ""},
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"receiving alice/microphone" in err
