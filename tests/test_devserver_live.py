"""The local LiveKit-protocol server with the real SDK on both sides, over WebSocket and WebRTC on
127.0.0.1: audio, video, both directions, late joiners, unpublish, leave, data, bad tokens, reconnects."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from heard import sounding_level
from livekit import rtc

from lkplug.testing import dominant_frequency
from lkplug_livekit.devserver import server_errors
from lkplug_livekit.devserver.peers import BARS, RATE, Peer, bar_colours
from lkplug_livekit.devserver.process import DevServerProcess

pytestmark = pytest.mark.live
SINE_RMS_DB = -6.0 - 3.01  # a sine with a -6 dBFS peak


def assert_sine(audio: np.ndarray, freq: float) -> None:
    steady = audio[len(audio) // 4 :]  # past the decoder's fade-in
    assert dominant_frequency(steady, RATE) == pytest.approx(freq, abs=2)
    assert sounding_level(steady, RATE) == pytest.approx(SINE_RMS_DB, abs=1.0)  # Opus is lossy


async def events(room: rtc.Room, name: str) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()
    room.on(name, lambda *args: queue.put_nowait(args))
    return queue


async def test_a_subscriber_hears_the_publisher_and_a_late_joiner_gets_existing_tracks(livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    bob = await livekit_join("bob")  # joins after alice published: a late joiner
    assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
    carol = await livekit_join("carol")
    assert_sine(await carol.receive_audio("alice", seconds=1.0), 440)


async def test_both_directions(livekit_join):
    alice = await livekit_join("alice")
    bob = await livekit_join("bob")
    await alice.publish_sine(440)
    await bob.publish_sine(660)
    heard_by_bob, heard_by_alice = await asyncio.gather(
        bob.receive_audio("alice", seconds=2.0), alice.receive_audio("bob", seconds=2.0)
    )
    assert_sine(heard_by_bob, 440)
    assert_sine(heard_by_alice, 660)


async def test_video_arrives_with_its_colours(livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_bars()
    bob = await livekit_join("bob")
    images = await bob.receive_video("alice", frames=20)
    last = images[-1]
    assert last.shape == (240, 320, 4)
    for got, want in zip(bar_colours(last), BARS, strict=True):
        assert np.abs(np.subtract(got, want)).max() < 40, (got, want)


async def test_unpublish_and_leave_reach_the_others(livekit_join):
    alice = await livekit_join("alice")
    bob = await livekit_join("bob")
    unpublished = await events(bob.room, "track_unpublished")
    left = await events(bob.room, "participant_disconnected")
    publication = await alice.publish_sine(440)
    await bob.remote_track("alice")
    await alice.room.local_participant.unpublish_track(publication.sid)
    remote_publication, participant = await asyncio.wait_for(unpublished.get(), 10)
    assert (remote_publication.sid, participant.identity) == (publication.sid, "alice")
    await alice.room.disconnect()
    (participant,) = await asyncio.wait_for(left.get(), 10)
    assert participant.identity == "alice"


async def test_data_packets_arrive_with_the_sender(livekit_join):
    alice = await livekit_join("alice")
    bob = await livekit_join("bob")
    received = await events(bob.room, "data_received")
    for reliable in (True, False):
        # the lossy channel may drop a packet: send a few, one must arrive
        for _ in range(5):
            await alice.room.local_participant.publish_data(b"hello", reliable=reliable, topic="t")
            await asyncio.sleep(0.05)
        (packet,) = await asyncio.wait_for(received.get(), 10)
        assert (packet.data, packet.topic, packet.participant.identity) == (b"hello", "t", "alice")
        while not received.empty():
            received.get_nowait()


async def test_a_bad_token_is_refused_clearly(livekit_server):
    room = rtc.Room()
    forged = livekit_server.token("mallory").rsplit(".", 1)[0] + ".forged"
    with pytest.raises(rtc.ConnectError):
        await asyncio.wait_for(room.connect(livekit_server.url, forged), 20)


async def test_after_a_dropped_signalling_socket_media_flows_again(livekit_server, livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_sine(440)
    bob = await livekit_join("bob")
    assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
    reconnected = await events(bob.room, "reconnected")
    await livekit_server.drop_signal("bob")
    await asyncio.wait_for(reconnected.get(), 30)
    assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)


async def test_a_publish_unpublish_republish_cycle_reaches_a_subscriber(livekit_server, livekit_join):
    """aiortc has no removeTrack: the server stops the sender and offers its m-line inactive. Twice
    round, so a second removal after a re-offer is covered too; the fixture fails the test on any
    traceback in the server's log (before the fix: AttributeError ... 'removeTrack')."""
    alice = await livekit_join("alice")
    bob = await livekit_join("bob")
    unsubscribed = await events(bob.room, "track_unsubscribed")
    for freq in (440, 660, 880):
        publication = await alice.publish_sine(freq)
        assert_sine(await bob.receive_audio("alice", seconds=1.0), freq)
        for task in alice.tasks:
            task.cancel()
        alice.tasks.clear()
        await alice.room.local_participant.unpublish_track(publication.sid)
        track, remote_publication, participant = await asyncio.wait_for(unsubscribed.get(), 10)
        assert (remote_publication.sid, participant.identity) == (publication.sid, "alice")


async def test_video_arrives_at_the_size_it_was_published(livekit_join):
    """Without simulcast, a subscriber gets the published 1280x720 (before: libwebrtc, told by aiortc's
    low bandwidth estimate, sent 640x360, and that is what arrived)."""
    alice = await livekit_join("alice")
    await alice.publish_bars(width=1280, height=720)
    bob = await livekit_join("bob")
    images = await bob.receive_video("alice", frames=20, timeout=60)
    assert {image.shape for image in images} == {(720, 1280, 4)}
    for got, want in zip(bar_colours(images[-1]), BARS, strict=True):
        assert np.abs(np.subtract(got, want)).max() < 40, (got, want)


async def test_a_subscription_asked_twice_is_made_and_logged_once():
    """Auto-subscribe and the SDK's own request (lkplug's track source makes one) both ask for
    alice's track: one subscription, one log line (before: two to four lines per subscription in
    ``lkplug devserver``'s output). After an unsubscribe, subscribing again is logged again."""
    server = await DevServerProcess(quiet=False).start()
    peers = []
    try:
        alice = await Peer.join(server.url, server.token("alice"))
        peers.append(alice)
        await alice.publish_sine(440)
        bob = await Peer.join(server.url, server.token("bob"))
        peers.append(bob)
        publication = None
        while publication is None:  # as the track source: asks as soon as it sees the publication
            alice_there = bob.room.remote_participants.get("alice")
            publication = next(iter(alice_there.track_publications.values()), None) if alice_there else None
            await asyncio.sleep(0.01)
        publication.set_subscribed(True)
        assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
        unsubscribed = await events(bob.room, "track_unsubscribed")
        publication.set_subscribed(False)
        await asyncio.wait_for(unsubscribed.get(), 10)
        publication.set_subscribed(True)
        assert_sine(await bob.receive_audio("alice", seconds=1.0), 440)
    finally:
        for peer in reversed(peers):
            await peer.close()
        await server.stop()
    await asyncio.sleep(0.2)  # the reader takes the last lines
    subscribed = [line for line in server.lines if "bob subscribed to alice/" in line]
    assert len(subscribed) == 2, "\n".join(server.lines)
    assert not server_errors(server.lines), "\n".join(server.lines)
