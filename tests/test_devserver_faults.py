"""The dev server under hostile tokens and faults (issue 17), with the real SDK: grants enforced as
LiveKit's server enforces them (and refused the way it refuses), sessions kept through a dropped
signalling socket, and the departure timeout."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from asyncio.subprocess import PIPE

import aiohttp
import numpy as np
import pytest
import soundfile
from heard import sounding_level
from livekit import api, rtc
from livekit.api.twirp_client import TwirpClient, TwirpError
from livekit.protocol import rtc as signal
from livekit.protocol.room import RemoveParticipantResponse, RoomParticipantIdentity
from livekit.rtc.participant import PublishTrackError

from lkplug.outputs import bytes_written
from lkplug.testing import dominant_frequency
from lkplug_livekit.devserver.peers import RATE
from lkplug_livekit.devserver.process import DevServerProcess
from lkplug_livekit.devserver.server import DevServer

pytestmark = [pytest.mark.live, pytest.mark.untimed]  # errors and faults; gaps allowed up to a second
SINE_RMS_DB = -6.0 - 3.01  # peers' publish_sine: a sine with a -6 dBFS peak


def assert_sine(audio, freq: float) -> None:
    steady = audio[len(audio) // 4 :]
    assert dominant_frequency(steady, RATE) == pytest.approx(freq, abs=2)
    assert sounding_level(steady, RATE) == pytest.approx(SINE_RMS_DB, abs=1.0)


def events(room: rtc.Room, name: str) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()
    room.on(name, lambda *args: queue.put_nowait(args))
    return queue


# grants ---------------------------------------------------------------------------------------


async def test_a_token_without_can_subscribe_gets_no_media_by_any_path(livekit_join):
    early = await livekit_join("early", can_subscribe=False)  # alice's tracks reach it as news
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    await alice.publish_bars()
    late = await livekit_join("late", can_subscribe=False)  # alice's tracks are there at its join
    control = await livekit_join("control")
    assert_sine(await control.receive_audio("alice", seconds=1.0), 440)  # the tracks flow
    for peer in (early, late):
        # LiveKit's server tells the participant its permission and sends no media; it does not
        # answer a subscription it refuses (it would retry, were the grant changed)
        assert peer.room.local_participant.permissions.can_subscribe is False
        for publication in peer.room.remote_participants["alice"].track_publications.values():
            publication.set_subscribed(True)  # asked for explicitly, too
    subscribed = [events(peer.room, "track_subscribed") for peer in (early, late)]
    await control.receive_audio("alice", seconds=2.0)  # two more seconds of media flowing
    for peer, queue in zip((early, late), subscribed, strict=True):
        assert queue.empty()
        assert all(
            p.track is None for p in peer.room.remote_participants["alice"].track_publications.values()
        )


async def test_data_from_a_token_without_can_publish_data_is_not_forwarded(livekit_join):
    mallory = await livekit_join("mallory", can_publish_data=False)
    carol = await livekit_join("carol")
    bob = await livekit_join("bob")
    received = events(bob.room, "data_received")
    assert mallory.room.local_participant.permissions.can_publish_data is False
    # the SDK raises nothing: LiveKit's server drops such packets without a word, and so do we
    await mallory.room.local_participant.publish_data(b"from mallory", reliable=True, topic="t")
    for _ in range(3):
        await carol.room.local_participant.publish_data(b"from carol", reliable=True, topic="t")
    senders = []
    for _ in range(3):  # carol's three arrive; mallory's, sent before them, never does
        (packet,) = await asyncio.wait_for(received.get(), 10)
        senders.append(packet.participant.identity)
    await asyncio.sleep(1.0)
    while not received.empty():
        senders.append(received.get_nowait()[0].participant.identity)
    assert senders == ["carol"] * 3


async def test_publishing_a_source_the_token_does_not_list_is_refused(livekit_join):
    alice = await livekit_join("alice", can_publish_sources=["microphone"])
    # the server answers NOT_ALLOWED (LiveKit's RequestResponse) and publishes nothing
    with pytest.raises(PublishTrackError) as refused:
        await alice.publish_bars()  # a camera
    # this SDK waits for the TrackPublished that never comes (it does not read the refusal)
    assert "track publication timed out" in str(refused.value)
    assert alice.room.local_participant.track_publications == {}
    await alice.publish_sine(440)  # its microphone is allowed
    assert len(alice.room.local_participant.track_publications) == 1


async def test_room_admin_is_scoped_to_its_room(livekit_server, livekit_join):
    alice = await livekit_join("alice", room="a")
    disconnected = events(alice.room, "disconnected")
    admin_of_b = livekit_server.token("admin", "b", room_admin=True)
    headers = {"Authorization": f"Bearer {admin_of_b}"}
    remove_alice = RoomParticipantIdentity(room="a", identity="alice")
    async with aiohttp.ClientSession() as session:
        client = TwirpClient(session, livekit_server.url, "livekit")
        with pytest.raises(TwirpError) as refused:
            await client.request(
                "RoomService", "RemoveParticipant", remove_alice, headers, RemoveParticipantResponse
            )
        # what LiveKit's server answers (EnsureAdminPermission, twirpAuthError)
        assert (refused.value.status, refused.value.code, refused.value.message) == (
            401,
            "unauthenticated",
            "permissions denied",
        )
        # the dev server's own admin endpoints: the same rule
        base = f"http://127.0.0.1:{livekit_server.port}/devserver"
        for path in ("/drop_signal/alice?room=a", "/restart"):
            async with session.post(base + path, headers=headers) as response:
                assert response.status == 401, path
                assert (await response.json()) == {"code": "unauthenticated", "msg": "permissions denied"}
    assert alice.room.remote_participants == {} and disconnected.empty()  # untouched
    # the admin of room a may (livekit-api mints that token itself)
    async with api.LiveKitAPI(livekit_server.url, livekit_server.api_key, livekit_server.api_secret) as lkapi:
        await lkapi.room.remove_participant(remove_alice)
    await asyncio.wait_for(disconnected.get(), 10)


# resume ---------------------------------------------------------------------------------------


async def test_a_dropped_signalling_socket_resumes_the_same_session(livekit_server, livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    bob = await livekit_join("bob")
    assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
    sid = bob.room.remote_participants["alice"].sid
    left = events(bob.room, "participant_disconnected")
    for identity, peer in (("alice", alice), ("bob", bob)):  # a publisher, then a subscriber
        reconnected = events(peer.room, "reconnected")
        await livekit_server.drop_signal(identity)
        await asyncio.wait_for(reconnected.get(), 30)
        assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
    assert bob.room.remote_participants["alice"].sid == sid  # the same session, never gone
    assert left.empty()


@pytest.fixture
async def quick_departures():
    server = await DevServerProcess(departure_timeout=2).start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_participant_whose_signalling_stays_down_leaves_after_the_departure_timeout(
    quick_departures,
):
    server = quick_departures
    bob = rtc.Room()
    await bob.connect(server.url, server.token("bob"))
    try:
        joined = events(bob, "participant_connected")
        left = events(bob, "participant_disconnected")
        # a client that joins and then vanishes (a bare WebSocket: it never resumes)
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/rtc?access_token={server.token('ghost')}&protocol=15"
            ws = await session.ws_connect(url)
            await ws.receive()  # the join response
            (participant,) = await asyncio.wait_for(joined.get(), 10)
            assert participant.identity == "ghost"
            await ws.close()
            # kept for the departure timeout (2 s here), then gone
            assert "ghost" in {p.identity for p in bob.remote_participants.values()}
            (participant,) = await asyncio.wait_for(left.get(), 10)
        assert participant.identity == "ghost"
    finally:
        await bob.disconnect()


# lkplug's recordings through faults -------------------------------------------------------------


async def lkplug(server, *args: str, timeout: float = 120):
    """The CLI in a child process, in room test of ``server``."""
    env = {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "LIVEKIT_ROOM": "test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkplug", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    communicate = asyncio.ensure_future(process.communicate())
    try:
        out, err = await asyncio.wait_for(asyncio.shield(communicate), timeout)
    except asyncio.TimeoutError:
        process.kill()
        out, err = await communicate
        raise AssertionError(f"lkplug did not end within {timeout} s: {err.decode()}") from None
    return process.returncode, out.decode(), err.decode()


def longest_silence(data: np.ndarray, rate: int) -> float:
    """Seconds of the longest run of silence (below -60 dBFS) after the first sound."""
    quiet = np.abs(data) < 1e-3
    quiet = quiet[np.argmin(quiet) :]  # from the first sound
    longest = run = 0
    for flag in quiet:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest / rate


async def _drop_lkplugs_signalling(server):
    await server.drop_signal("lkplug")


async def _restart_the_server(server):
    await server.restart()


@pytest.mark.parametrize("fault", [_drop_lkplugs_signalling, _restart_the_server])
async def test_a_20_s_recording_without_follow_outlasts_a_fault(
    livekit_server, livekit_join, tmp_path, fault
):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    out = tmp_path / "out.wav"
    record = asyncio.ensure_future(
        lkplug(
            livekit_server,
            "run",
            "--source",
            "track:alice",
            "--sink",
            f"wav:{out}",
            "--identity",
            "lkplug",
            "-t",
            "20",
        )
    )
    await asyncio.sleep(6)  # recording by now
    await fault(livekit_server)
    code, _, err = await record
    assert code == 0, err
    data, rate = soundfile.read(out)
    assert len(data) == 20 * rate  # all of it: the fault was a gap, not the end
    assert longest_silence(data, rate) <= 1.0, err
    tail = data[-rate:]  # after the fault
    assert dominant_frequency(tail, rate) == pytest.approx(440, abs=2)
    assert sounding_level(tail, rate) == pytest.approx(SINE_RMS_DB, abs=1.0)


async def test_a_participant_gone_for_good_ends_the_recording_with_an_error(
    livekit_server, livekit_join, tmp_path
):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    out = tmp_path / "out.wav"
    record = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:alice", "--sink", f"wav:{out}", "-t", "60")
    )
    for _ in range(600):  # until 2 s of her tone are written (s16 mono), not a fixed wait
        if bytes_written(out) > 2 * RATE * 2 or record.done():
            break
        await asyncio.sleep(0.1)
    await alice.close()  # she leaves and does not come back
    code, _, err = await record
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("lkplug: error:")]
    assert len(errors) == 1 and "alice left the room after" in errors[0], err
    # she left (CLIENT_INITIATED): the end at once, with no wait for a return
    assert errors[0].endswith("of the 60 s asked (-t)")
    assert "Traceback" not in err
    data, rate = soundfile.read(out)  # what came before is kept, in a valid file
    assert 1 * rate < len(data) < 10 * rate
    assert dominant_frequency(data[-rate // 2 :], rate) == pytest.approx(440, abs=2)


async def test_a_client_that_goes_silent_is_dropped_after_the_ping_timeout_then_departs():
    """A network that drops packets closes nothing: silence past the ping timeout is a lost
    connection (then the departure timeout runs). Server in this process: no media here."""
    server = await DevServer(ping_timeout=1.5, departure_timeout=1.0).start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                f"{server.url}/rtc?access_token={server.token('quiet')}&protocol=15"
            )
            await ws.receive()  # the join response; from here on it says nothing (and closes nothing)
            room = server.rooms["test"]
            participant = room.participants["quiet"]

            async def until(condition):
                while not condition():
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(until(lambda: participant.departure or participant.gone), 20)  # ping
            assert room.participants.get("quiet") is participant  # kept for a resume, first
            await asyncio.wait_for(until(lambda: participant.gone), 20)  # then the departure timeout
            assert "test" not in server.rooms
            await ws.close()
    finally:
        await server.stop()


async def test_a_request_after_the_session_ended_is_dropped_without_a_fault(caplog):
    """A client's request that arrives after its session ended (here removed; in CI a server restart
    met an answer in flight: "Cannot handle answer in signaling state closed", a traceback in the
    server's log) is dropped: nothing acts for a participant who is gone, and no fault is logged.
    Server in this process: a bare WebSocket client, no media."""
    caplog.set_level(logging.INFO, logger="lkplug.devserver")
    server = await DevServer().start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/rtc?access_token={server.token('late')}&protocol=15")
            await ws.receive()  # the join response
            room = server.rooms["test"]
            participant = room.participants["late"]
            await server._remove(room, participant)
            answer = signal.SignalRequest(answer=signal.SessionDescription(type="answer", sdp="v=0\r\n"))
            await ws.send_bytes(answer.SerializeToString())
            track = signal.SignalRequest(add_track=signal.AddTrackRequest(cid="mic", name="mic"))
            await ws.send_bytes(track.SerializeToString())
            for _ in range(50):  # until the server has read both (it logs each one it drops)
                if sum("after its session ended" in r.getMessage() for r in caplog.records) == 2:
                    break
                await asyncio.sleep(0.1)
            await ws.close()
    finally:
        await server.stop()
    assert sum("after its session ended" in r.getMessage() for r in caplog.records) == 2
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
    assert not participant.pending and not participant.tracks  # the late add_track published nothing


async def test_a_request_for_a_peer_connection_the_client_closed_is_dropped_without_a_fault(caplog):
    """A client that leaves closes its peer connections, and aiortc closes the server's end when the
    DTLS close arrives, which can overtake the client's last answer on the signalling socket: in CI,
    "Cannot handle answer in signaling state closed", a traceback, as lkplug left a room. Here the
    server's subscriber PC is closed as aiortc closes it (the participant is not gone yet), then
    the answer arrives. Server in this process: a bare WebSocket client, no media."""
    caplog.set_level(logging.INFO, logger="lkplug.devserver")
    server = await DevServer().start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                f"{server.url}/rtc?access_token={server.token('leaving')}&protocol=15"
            )
            await ws.receive()  # the join response
            participant = server.rooms["test"].participants["leaving"]
            await participant.subscriber.close()
            answer = signal.SignalRequest(answer=signal.SessionDescription(type="answer", sdp="v=0\r\n"))
            await ws.send_bytes(answer.SerializeToString())
            for _ in range(50):  # until the server has read it
                if any("cut short by its session's end" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            await ws.close()
    finally:
        await server.stop()
    assert any("cut short by its session's end" in r.getMessage() for r in caplog.records)
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
