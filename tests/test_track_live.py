"""``track:`` sources and sinks with the real SDK against the local server: record a participant,
process and publish back, publish a file at real time, fan out, and fail clearly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import av
import numpy as np
import pytest
import soundfile
from heard import sounding_level, steady, window_levels

from lkplug.testing import dominant_frequency, level_dbfs, sine, to_s16
from lkplug_livekit.devserver.peers import BARS, HEIGHT, RATE, WIDTH, bar_colours, colour_bars

pytestmark = pytest.mark.live
SENT_RMS_DB = -6.0 - 3.01  # what peers' publish_sine sends: a sine with a -6 dBFS peak
# alice's capture queue: the SDK sends silence when it runs dry, and on a loaded machine this test
# process stalled up to 528 ms (measured, load 10 on 2 cores); with 100 ms that was a gap in what alice
# sent, which the gap and level checks here then blamed on lkplug
SINE_QUEUE_MS = 1000


def server_env(server, room: str = "test") -> dict:
    """The environment of an lkplug child process that joins ``room`` of ``server``."""
    return {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
        "LIVEKIT_ROOM": room,
    }


async def lkplug(server, *args: str, timeout: float = 60, room: str = "test"):
    """The CLI in a child process (the server fixture keeps serving meanwhile)."""
    # SIGABRT on a hang dumps every thread's stack to stderr
    env = {**server_env(server, room), "PYTHONFAULTHANDLER": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lkplug",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    talking = asyncio.ensure_future(process.communicate())
    done, _ = await asyncio.wait({talking}, timeout=timeout)
    if not done:  # a run that does not end: show where it was and what it said
        process.send_signal(signal.SIGABRT)
        done, _ = await asyncio.wait({talking}, timeout=10)
        if not done:
            process.kill()
        out, err = await talking
        server_log = "\n".join(server.lines[-40:])
        raise AssertionError(
            f"lkplug {' '.join(args)} did not end within {timeout} s:\n{err.decode()}\n"
            f"the server's log:\n{server_log}"
        )
    out, err = talking.result()
    return process.returncode, out.decode(), err.decode()


async def test_recording_a_participant(livekit_server, livekit_join, tmp_path):
    alice = await livekit_join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    out = tmp_path / "out.wav"
    code, _, err = await lkplug(
        livekit_server,
        "run",
        "--source",
        "track:alice",
        "--proc",
        "gain:db=-6",
        "--sink",
        f"wav:{out}",
        "-t",
        "3",
    )
    assert code == 0, err
    data, rate = soundfile.read(out)
    assert (rate, len(data)) == (48000, 3 * 48000)
    heard = steady(data)
    assert dominant_frequency(heard, rate) == pytest.approx(440, abs=2)
    assert sounding_level(heard, RATE) == pytest.approx(SENT_RMS_DB - 6.0, abs=0.5)


async def test_processed_audio_is_published_back(livekit_server, livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    echo = asyncio.ensure_future(
        lkplug(
            livekit_server,
            "run",
            "--source",
            "track:alice",
            "--proc",
            "gain:db=-6",
            "--sink",
            "track:alice-processed",
            "-t",
            "8",
            "--identity",
            "lkplug",
        )
    )
    carol = await livekit_join("carol")
    heard = await carol.receive_audio("lkplug", seconds=4.0)
    code, _, err = await echo
    assert code == 0, err
    heard = steady(heard)
    assert dominant_frequency(heard, RATE) == pytest.approx(440, abs=2)
    assert sounding_level(heard, RATE) == pytest.approx(SENT_RMS_DB - 6.0, abs=0.5)


async def packets_received(track) -> int:
    """RTP packets that reached the subscriber so far (the inbound stats of its track)."""
    stats = await track.get_stats()
    return sum(s.inbound_rtp.received.packets_received for s in stats if s.HasField("inbound_rtp"))


async def test_a_file_is_published_at_real_time_and_received_whole(livekit_server, livekit_join, tmp_path):
    clip = tmp_path / "clip.wav"
    seconds = 3.0
    soundfile.write(clip, to_s16(sine(660, seconds, RATE)), RATE)
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:music,wait=10", "--identity", "lkplug"),
        )
    )
    track = await bob.remote_track("lkplug", timeout=30)
    from livekit import rtc

    sounding = 0  # 10 ms frames with sound, as played out by the subscriber
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)

    async def listen():
        nonlocal sounding
        async for event in stream:
            sounding += np.frombuffer(event.frame.data, np.int16).any()

    # The pace is read off packet arrivals (the playout clock would hide it: a jitter buffer plays
    # at real time whatever comes in, and conceals gaps). Every 20 ms of Opus is one packet.
    arrivals = []  # (wall time, packets received so far)
    listener = asyncio.ensure_future(listen())
    while not publish.done():
        arrivals.append((time.monotonic(), await packets_received(track)))
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)  # what is still on the way
    listener.cancel()
    await stream.aclose()
    code, _, err = await publish
    assert code == 0, err
    # the whole clip arrived (a jitter buffer may add a few concealment frames, never fewer)
    assert seconds * 0.97 <= sounding * 0.01 <= seconds * 1.15
    # the stats refresh every ~60 ms: fit the packet rate over the moments the count changed
    changes = [
        (t, count)
        for (t, count), (_, before) in zip(arrivals[1:], arrivals[:-1], strict=True)
        if count != before
    ]
    times, counts = np.array(changes).T
    assert counts[-1] * 0.02 == pytest.approx(seconds, rel=0.05)  # every packet of the clip
    packets_per_second = np.polyfit(times, counts, 1)[0]
    assert packets_per_second * 0.02 == pytest.approx(1.0, abs=0.05)  # sent at real time


async def test_fan_out_records_every_publisher_to_its_own_file(livekit_server, livekit_join, tmp_path):
    for identity, freq in (("guest-a", 440), ("guest-b", 660)):
        peer = await livekit_join(identity)
        await peer.publish_sine(freq, queue_ms=SINE_QUEUE_MS)
    code, _, err = await lkplug(
        livekit_server,
        "run",
        "--source",
        "track:guest-*,wait=2",
        "--sink",
        f"wav:{tmp_path}/rec/{{identity}}-{{source}}.wav",  # README's example: rec/ is made
        "-t",
        "2",
    )
    assert code == 0, err
    # the summary counts streams; their media added up would be no real-time factor
    assert "lkplug: 2 streams, " in err and "real time" not in err, err
    heard = {}
    for identity in ("guest-a", "guest-b"):
        data, rate = soundfile.read(tmp_path / "rec" / f"{identity}-microphone.wav")
        assert len(data) == 2 * rate
        heard[identity] = dominant_frequency(steady(data), rate)
    assert heard == {"guest-a": pytest.approx(440, abs=2), "guest-b": pytest.approx(660, abs=2)}


async def in_room(peer, prefix: str, timeout: float = 60) -> None:
    """Until a participant whose identity starts with ``prefix`` is in ``peer``'s room."""

    async def look():
        while not any(i.startswith(prefix) for i in peer.room.remote_participants):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(look(), timeout)


async def test_lkplug_waits_for_a_late_publisher(livekit_server, livekit_join, tmp_path):
    out = tmp_path / "late.wav"
    record = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:alice", "--sink", f"wav:{out}", "-t", "2")
    )
    # alice comes once lkplug is in the room (a fixed 3 s was too short on a loaded machine: lkplug
    # joined after alice had, and never waited)
    await in_room(await livekit_join("watcher"), "lkplug-recorder-")
    await asyncio.sleep(0.5)
    alice = await livekit_join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    code, _, err = await record
    assert code == 0, err
    assert "waiting for alice" in err
    data, rate = soundfile.read(out)
    assert dominant_frequency(steady(data), rate) == pytest.approx(440, abs=2)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("secret", "cannot join room test"),
        ("url", "cannot join room test at ws://127.0.0.1:9"),
        ("missing", "alice/first audio did not appear in room test within 2 s"),
    ],
)
async def test_connection_problems_are_one_clear_line(livekit_server, case, expected):
    args = ["run", "--source", "track:alice,wait=2", "--sink", "null"]
    if case == "secret":
        args += ["--api-secret", "wrong-secret-value-that-is-long-enough"]
    if case == "url":
        args += ["--url", "ws://127.0.0.1:9"]
    code, _, err = await lkplug(livekit_server, *args)
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("lkplug: error:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert livekit_server.api_secret not in err and "wrong-secret" not in err
    # the SDK's own log lines (its Rust core's: 401 handshakes, retries) only with --debug
    assert all(line.startswith("lkplug:") for line in err.splitlines() if line.strip()), err


async def test_the_sdks_log_lines_show_with_debug(livekit_server):
    args = ["run", "--source", "track:alice,wait=2", "--sink", "null", "--debug"]
    code, _, err = await lkplug(
        livekit_server, *args, "--api-secret", "wrong-secret-value-that-is-long-enough"
    )
    assert code == 1
    assert any(line.startswith(("ERROR livekit", "WARNING livekit")) for line in err.splitlines()), err


async def _leave_and_rejoin(server, join, alice):
    await alice.close()
    await asyncio.sleep(1.0)
    alice = await join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    return alice


async def _unpublish_and_republish(server, join, alice):
    for sid in list(alice.room.local_participant.track_publications):
        await alice.room.local_participant.unpublish_track(sid)
    await asyncio.sleep(1.0)
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    return alice


async def _drop_lkplugs_signalling_socket(server, join, alice):
    await server.drop_signal("lkplug")
    return alice


@pytest.mark.parametrize(
    "disruption", [_leave_and_rejoin, _unpublish_and_republish, _drop_lkplugs_signalling_socket]
)
async def test_a_recording_goes_on_through_a_disruption(livekit_server, livekit_join, tmp_path, disruption):
    alice = await livekit_join("alice")
    subscribed = asyncio.Event()  # the server tells alice when lkplug's subscription carries media
    alice.room.on("local_track_subscribed", lambda *_: subscribed.set())
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    out = tmp_path / "out.wav"
    record = asyncio.ensure_future(
        lkplug(
            livekit_server,
            "run",
            "--source",
            "track:alice,follow=true,wait=20",
            "--sink",
            f"wav:{out}",
            "-t",
            "6",
            "--identity",
            "lkplug",
        )
    )
    # recording by now (a fixed 4 s was not always enough on a loaded machine: lkplug took that long
    # to start, and the disruption came before its subscription)
    await asyncio.wait_for(subscribed.wait(), 60)
    await asyncio.sleep(1.5)
    alice = await disruption(livekit_server, livekit_join, alice)
    code, _, err = await record
    assert code == 0, err
    assert "Traceback" not in err
    if disruption is not _drop_lkplugs_signalling_socket:  # that one resumes the session: no new track
        assert err.count("receiving alice/microphone") >= 2, err  # subscribed again after the disruption
    if disruption is _unpublish_and_republish:  # says what it waits for again (before: a bare "waiting
        # for alice/first audio" after "receiving alice/microphone", read as out of order)
        assert "alice/microphone ended; waiting for alice/first audio" in err, err
    data, rate = soundfile.read(out)  # a valid file, as long as asked (gaps are not recorded)
    assert len(data) == 6 * rate
    tail = data[-rate:]  # the last second came after the disruption
    assert dominant_frequency(tail, rate) == pytest.approx(440, abs=2)
    assert sounding_level(tail, rate) == pytest.approx(SENT_RMS_DB, abs=1.0)


def assert_bars(image: np.ndarray) -> None:
    """The camera pattern's four bars, each within what a lossy codec changes of a flat colour."""
    for seen, sent in zip(bar_colours(image), BARS, strict=True):
        assert np.abs(np.subtract(seen, sent)).max() < 40, (bar_colours(image), BARS)


@pytest.mark.parametrize("pixel_format", ["yuv420p", "rgb24"])
async def test_alices_camera_is_recorded_to_a_file_with_its_colours(
    livekit_server, livekit_join, tmp_path, pixel_format
):
    alice = await livekit_join("alice")
    await alice.publish_bars()
    out = tmp_path / "camera.mp4"
    source = f"track:alice/camera,format={pixel_format}"  # rgb24: the engine converts for H.264
    code, _, err = await lkplug(livekit_server, "run", "--source", source, "--sink", f"file:{out}", "-t", "3")
    assert code == 0, err
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", WIDTH, HEIGHT)
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(pictures) >= 15  # 3 s of a 15 fps camera, less what came before the first keyframe
    assert_bars(pictures[-1])


def write_clip(
    path, tone: np.ndarray, rate: int, pictures: dict, audio_codec: str = "aac", fps: int = 15
) -> None:
    """An MP4 made with PyAV: ``tone`` (int16 mono samples at ``rate``) and ``pictures`` (picture
    number at ``fps`` -> rgb24 image (HEIGHT, WIDTH, 3)) in H.264."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream(audio_codec, rate=rate, layout="mono")
        for start in range(0, len(tone) - 1023, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        for number, image in sorted(pictures.items()):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = number
            container.mux(video.encode(frame))
        for stream in (video, audio):
            container.mux(stream.encode(None))


async def test_a_video_file_is_published_as_a_camera_track(livekit_server, livekit_join, tmp_path):
    """Every picture received is the file's, the first one too. Before: the first ones were all black
    (Y 0, below video black): the SDK sends an empty I420 picture 10 times a second from the moment a
    VideoSource exists until its first capture, and a listener got those until the first picture came
    (here at 1 s, after a tone alone, as a file whose picture starts late)."""
    clip = tmp_path / "bars.mp4"
    bars = colour_bars()[..., :3].copy()
    write_clip(clip, to_s16(sine(440, 3.0, RATE))[:, 0], RATE, dict.fromkeys(range(15, 45), bars))  # 1-3 s
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:cam,simulcast=false,wait=10"),
            *("--identity", "lkplug"),
        )
    )
    pictures = await bob.receive_video("lkplug", frames=10)
    code, _, err = await publish
    assert code == 0, err
    assert pictures[0].shape == (HEIGHT, WIDTH, 4)
    for picture in pictures:
        assert_bars(picture)


async def test_a_30_fps_file_goes_out_at_30_fps(livekit_server, livekit_join, tmp_path):
    """Every picture of a 30 fps 320x240 file reaches a listener. Before (a new user's try): the SDK's
    default encoding for the size, meant for cameras (320x240: 20 fps), dropped every third picture
    (140 of 210 received, exit 0); now the track is sent at the file's own rate."""
    from livekit import rtc

    clip = tmp_path / "bars30.mp4"
    bars = colour_bars()[..., :3].copy()
    write_clip(clip, to_s16(sine(440, 2.0, RATE))[:, 0], RATE, dict.fromkeys(range(60), bars), fps=30)
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:cam,simulcast=false,wait=10"),
            *("--identity", "lkplug"),
        )
    )
    track = await bob.remote_track("lkplug", "video")
    received = []

    async def watch():
        async for event in rtc.VideoStream(track):
            received.append(event.frame.width)

    watching = asyncio.ensure_future(watch())
    code, _, err = await publish
    await asyncio.sleep(1.0)  # what is still on the way
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    assert code == 0, err
    # ffprobe -count_frames bars30.mp4: 60 pictures at 30 fps (before: 40 received); one or two may
    # go before the listener's decoder has its first key frame
    print(f"{len(received)} pictures received")
    assert 57 <= len(received) <= 60, (len(received), err)


async def test_a_relayed_30_fps_camera_goes_on_at_30_fps(livekit_server, livekit_join):
    """A relayed camera names no frame rate. Before, the relay's track went out at the SDK's default
    for 320x240, 20 fps: bob got two pictures from the relay for every three from alice. Counted
    over the same stretch of time at bob, from alice directly and through the relay."""
    from livekit import rtc

    alice = await livekit_join("alice")
    await alice.publish_bars(fps=30)
    bob = await livekit_join("bob")
    relay = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", "track:alice/camera", "--sink", "track:relay,simulcast=false"),
            *("-t", "6", "--identity", "relay"),
        )
    )
    arrivals: dict[str, list[float]] = {"alice": [], "relay": []}

    async def watch(identity: str):
        track = await bob.remote_track(identity, "video")
        async for _event in rtc.VideoStream(track):
            arrivals[identity].append(asyncio.get_running_loop().time())

    watching = [asyncio.ensure_future(watch(identity)) for identity in arrivals]
    code, _, err = await relay
    for task in watching:
        task.cancel()
    await asyncio.gather(*watching, return_exceptions=True)
    assert code == 0, err
    relayed = arrivals["relay"]
    assert len(relayed) > 60, (len(relayed), err)
    begin, end = relayed[0] + 1.0, relayed[-1] - 0.5  # past the relay's start, before its end
    counts = {who: sum(begin <= t <= end for t in times) for who, times in arrivals.items()}
    print(f"pictures at bob over {end - begin:.1f} s: {counts}")
    # alice sends 30 a second (colour bars at 320x240); the relay sends each one on (before: 2 in 3)
    assert counts["relay"] >= 0.9 * counts["alice"] > 0, (counts, err)


async def test_a_file_with_pictures_goes_out_without_dropouts_and_in_sync(
    livekit_server, livekit_join, tmp_path
):
    """A 44.1 kHz tone beside 15 fps pictures: bob hears the tone without a break, and its end (3.0 s)
    comes with the picture that turns white at 3.0 s. Before: beside video the audio went out without
    the capture queue's start (the queue would have put it 200 ms behind the pictures) and ran dry
    between the bursts the decoder and soxr hand on (README: 10 ms dropouts 0.2-0.4 s and 1.9-2.5 s
    in). Now the queue starts full and each picture waits as long as the audio does."""
    from livekit import rtc

    clip = tmp_path / "talk.mp4"
    tone = np.zeros(round(3.6 * 44100), np.int16)
    tone[: 3 * 44100] = to_s16(sine(440, 3.0, 44100))[:, 0]
    bars = colour_bars()[..., :3].copy()
    white = np.full_like(bars, 255)
    write_clip(clip, tone, 44100, {n: bars if n < 45 else white for n in range(54)})  # 3.6 s; white from 3 s
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:talk,simulcast=false,wait=10"),
            *("--identity", "talk"),
        )
    )
    sound_track = await bob.remote_track("talk", "audio")
    picture_track = await bob.remote_track("talk", "video")
    heard: list[tuple[float, np.ndarray]] = []  # (arrival, 10 ms of samples)
    seen: list[tuple[float, float]] = []  # (arrival, mean level of the picture)

    async def listen():
        async for event in rtc.AudioStream(sound_track, sample_rate=RATE, num_channels=1):
            heard.append((time.monotonic(), np.frombuffer(event.frame.data, np.int16).astype(np.float64)))

    async def watch():
        async for event in rtc.VideoStream(picture_track, format=rtc.VideoBufferType.RGBA):
            picture = np.frombuffer(event.frame.data, np.uint8).reshape(event.frame.height, -1, 4)
            seen.append((time.monotonic(), float(picture[..., :3].mean())))

    tasks = [asyncio.ensure_future(listen()), asyncio.ensure_future(watch())]
    code, _, err = await publish
    await asyncio.sleep(1.0)  # what is still on the way
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert code == 0, err
    levels = np.array([np.sqrt(np.mean(chunk**2)) for _, chunk in heard])
    sounding = np.flatnonzero(levels > 1000)
    last = sounding[-1]  # the tone's last 10 ms that sound
    tone = past_fade_in(np.concatenate([chunk for _, chunk in heard[:last]]))
    breaks = tone_breaks(tone, RATE, 440.0)
    assert breaks == [], err
    white = next(arrival for arrival, level in seen if level > 200)
    offset = heard[last + 1][0] - white  # the first 10 ms after the tone, against the white picture
    print(f"tone {len(tone) / RATE:.2f} s, its end {offset * 1000:+.0f} ms from the white picture")
    # in sync as lip sync goes (ITU-R BT.1359: sound at most 45 ms early, 125 ms late); before the
    # fix the pictures would have been 200 ms early had the audio alone waited for its queue
    assert -0.045 <= offset <= 0.125, (offset, err)


async def test_a_file_whose_video_ends_first_goes_out_whole(livekit_server, livekit_join, tmp_path):
    """Before (a new user's try): video shorter than the audio: silence before the last audio (1.87 s
    for a 7 s file whose video ends at 5 s: the decoder's last pictures, given at the end of the file,
    moved the engine's pace on), and a "ran dry" warning blaming the machine."""
    audio, video = 3.07, 1.5  # 83 ms of audio after the last pictures (blocks of 5120)
    clip = tmp_path / "apart.mp4"
    bars = colour_bars()[..., :3].copy()
    write_clip(
        clip, to_s16(sine(440, audio, RATE))[:, 0], RATE, dict.fromkeys(range(round(video * 15)), bars)
    )
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:apart,simulcast=false,wait=10"),
            *("--identity", "apart"),
        )
    )
    from livekit import rtc

    track = await bob.remote_track("apart", "audio")
    chunks: list[np.ndarray] = []

    async def listen():  # to the track's end, whenever that is
        async for event in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            chunks.append(np.frombuffer(event.frame.data, np.int16).astype(np.float64))

    listening = asyncio.ensure_future(listen())
    code, _, err = await publish
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert code == 0, err
    assert "ran dry" not in err
    heard = np.concatenate(chunks)
    sounding = np.flatnonzero(np.abs(heard) > 1000)
    tone = heard[sounding[0] : sounding[-1] + 1]
    windows = np.sqrt(np.mean(tone[: len(tone) // 480 * 480].reshape(-1, 480) ** 2, axis=1))
    quiet = windows < 100  # 10 ms windows 40 dB below the tone (-9 dBFS)
    longest = max((len(run) for run in "".join("q" if q else "." for q in quiet).split(".")), default=0)
    print(f"tone {len(tone) / RATE:.2f} s of {audio} s, longest silence in it {longest * 10} ms")
    assert longest * 10 < 50, err  # before: 1.87 s before the last audio


async def publish_numbered(peer, count: int, fps: int = 15) -> None:
    """Publish ``count`` flat grey pictures, picture n at grey 40 + 4n (a VP8 round trip keeps a flat
    level within 2), then hold the last one for a second (the encoder sends what it has) and leave."""
    from livekit import rtc

    video = rtc.VideoSource(WIDTH, HEIGHT)
    track = rtc.LocalVideoTrack.create_video_track("camera", video)
    options = rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        simulcast=False,
        video_codec=rtc.VideoCodec.VP8,
        degradation_preference=rtc.DegradationPreference.MAINTAIN_RESOLUTION,
    )
    await peer.room.local_participant.publish_track(track, options)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(count):
        grey = np.full((HEIGHT, WIDTH, 4), 40 + 4 * index, np.uint8)
        grey[..., 3] = 255
        picture = rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, grey.tobytes())
        video.capture_frame(picture, timestamp_us=int(index * 1e6 / fps))
        await asyncio.sleep(max(0.0, start + (index + 1) / fps - loop.time()))
    await asyncio.sleep(1.0)
    await peer.close()


async def test_a_publisher_leaving_ends_the_recording_after_the_backlog(
    livekit_server, livekit_join, tmp_path
):
    """A recorder slower than real time (a stage blocks 0.25 s per picture; 15 fps come) has a backlog
    when alice leaves: every picture received goes through the chain into the file before it ends.
    Before: what was received but not yet through the chain was dropped (a new user's 6 s camera:
    2.02 s, pictures 0-66 of 180 recorded, "talk left the room", exit 0)."""
    count = 45  # 3 s at 15 fps; the recorder takes 11 s for them
    out = tmp_path / "rec.mp4"
    hooks = os.path.join(os.path.dirname(__file__), "live_hooks.py")
    record = asyncio.ensure_future(
        lkplug(
            livekit_server,
            "run",
            "-p",
            hooks,
            "--source",
            "track:alice/camera,wait=30",
            "--proc",
            "slowvideo:0.25",
            "--sink",
            f"file:{out}",
            timeout=90,
        )  # fmt: skip
    )
    alice = await livekit_join("alice")
    await publish_numbered(alice, count)
    code, _, err = await record
    assert code == 0, err
    assert "alice left the room" in err
    with av.open(str(out)) as container:
        numbers = [
            round((float(frame.to_ndarray(format="rgb24").mean()) - 40) / 4)
            for frame in container.decode(video=0)
        ]
    # the last picture sent is in the file (a lossy round trip: within one), and the file is in order
    assert numbers and numbers[-1] >= count - 2, numbers
    assert numbers == sorted(numbers), numbers


async def test_two_recorders_without_identity_share_a_room(livekit_server, livekit_join, tmp_path):
    """Each process joins under an identity of its own (before: both were 'lkplug', the second replaced
    the first, which came back and replaced the second: 0.29 s of 3 s, "alice left the room")."""
    alice = await livekit_join("alice")
    subscribed = asyncio.Event()  # the server tells alice when a subscription carries media
    alice.room.on("local_track_subscribed", lambda *_: subscribed.set())
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    outs = [tmp_path / "one.wav", tmp_path / "two.wav"]
    first = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:alice", "--sink", f"wav:{outs[0]}", "-t", "8")
    )
    await asyncio.wait_for(subscribed.wait(), 60)
    await asyncio.sleep(1)  # the first is recording when the second joins (not a fixed 2 s from start)
    second = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:alice", "--sink", f"wav:{outs[1]}", "-t", "8")
    )
    results = await asyncio.gather(first, second)
    identities = set()
    for (code, _, err), out in zip(results, outs, strict=True):
        assert code == 0, err
        assert "s of media received in" in err and "real time" not in err, err  # live: no speed
        assert err.count("receiving alice/microphone") == 1, err  # never re-subscribed
        (joined,) = [line for line in err.splitlines() if "joining room test as" in line]
        identities.add(joined.split(" as ")[1])
        data, rate = soundfile.read(out)
        assert len(data) >= 7.9 * rate
        # no gap: every 20 ms block past the fade-in has the tone at its level
        levels = window_levels(steady(data), rate, ms=20)
        # (on failure: the dips' 20 ms blocks, and lkplug's stderr, which says where the receiver
        # concealed or stretched audio: packets late or lost before it, not lkplug's doing)
        dips = np.flatnonzero(levels <= SENT_RMS_DB - 3)
        assert levels.min() > SENT_RMS_DB - 3, (out.name, dips, levels[dips].round(1), err)
    assert len(identities) == 2 and all(i.startswith("'lkplug-recorder-") for i in identities), identities


@pytest.mark.untimed
async def test_a_replaced_participant_fails_with_the_identity_hint(livekit_server, livekit_join, tmp_path):
    """Two processes given one --identity: the one replaced exits non-zero, in one line, with the hint
    (before: "alice left the room", exit 0, a short file; a publisher: UnpublishTrackError)."""
    alice = await livekit_join("alice")
    subscribed = asyncio.Event()  # the server tells alice when a subscription carries media
    alice.room.on("local_track_subscribed", lambda *_: subscribed.set())
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    args = ("--identity", "same", "--source", "track:alice", "--sink")
    first = asyncio.ensure_future(lkplug(livekit_server, "run", *args, f"wav:{tmp_path}/1.wav", "-t", "8"))
    # the first is recording when the second replaces it (a fixed 3 s from its start was once too
    # short on a loaded machine: no frame yet, so no file)
    await asyncio.wait_for(subscribed.wait(), 60)
    await asyncio.sleep(1)
    code, _, err = await lkplug(livekit_server, "run", *args, "track:echo", "-t", "3")
    assert code == 0, err
    code, _, err = await first
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("lkplug: error:")]
    assert len(lines) == 1 and "replaced" in lines[0] and "--identity" in lines[0], err
    assert "Traceback" not in err and "left the room" not in err and "livekit" not in err.lower(), err
    assert 0 < soundfile.info(f"{tmp_path}/1.wav").duration < 8  # valid, holding what came before


@pytest.mark.untimed
@pytest.mark.parametrize("sink", ["track:alice-processed", "wav:{tmp_path}/out.wav"])
async def test_a_server_that_goes_away_is_blamed_not_the_participant(
    livekit_server, livekit_join, tmp_path, sink
):
    """The server stops while a relay (track in, track out) or a recorder runs: one line that names the
    server (before: "alice left the room ... and did not come back within 20 s", or for the relay "the
    server ended lkplug's session ...: unknown reason", after the SDK gave up reconnecting)."""
    alice = await livekit_join("alice")
    subscribed = asyncio.Event()
    alice.room.on("local_track_subscribed", lambda *_: subscribed.set())
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    args = ("--source", "track:alice", "--sink", sink.format(tmp_path=tmp_path), "-t", "60")
    run = asyncio.ensure_future(lkplug(livekit_server, "run", *args, timeout=90))
    await asyncio.wait_for(subscribed.wait(), 60)
    await asyncio.sleep(1)
    await livekit_server.stop()
    code, _, err = await run
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("lkplug: error:")]
    assert (
        len(lines) == 1 and f"lost the connection to the LiveKit server at {livekit_server.url}" in lines[0]
    ), err
    assert "alice left" not in err and "Traceback" not in err, err
    assert "still waiting for alice/first audio: in room" not in err, err  # not "nobody else": lkplug is away


async def test_a_session_ended_between_two_frames_ends_the_source(livekit_server, livekit_join):
    """The SDK tells of the session's end (replaced, removed, the server gone) while lkplug hands a
    frame on: the source must see it once the frames the SDK had already received are handed on
    (before: the signal was cleared unseen at the next wait; with frames still coming, silence was
    recorded until -t and exit 0, and once they stopped, the run waited for ever: the
    replaced-participant test's hang). Here the session's end is only told, so alice's frames go on
    coming: those queued while this process was held up (a loaded machine) still come first."""
    from livekit import rtc

    from lkplug import MediaError, RunContext
    from lkplug_livekit.source import TrackSource

    alice = await livekit_join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS)
    options = {
        "url": livekit_server.url,
        "api_key": livekit_server.api_key,
        "api_secret": livekit_server.api_secret,
        "room": "test",
        "identity": "lkplug",
    }
    source = TrackSource("alice")
    source.bind(RunContext(options=options, frame_ms=10))
    frames = source.frames()
    try:
        await asyncio.wait_for(anext(frames), 30)
        # what the SDK's "disconnected" event calls, here between two frames
        source.connection._on_disconnected(rtc.DisconnectReason.DUPLICATE_IDENTITY)
        queued = 0
        with pytest.raises(MediaError, match="replaced lkplug"):
            while queued <= 50:  # 0.5 s of 10 ms frames: more than a held-up process had queued
                await asyncio.wait_for(anext(frames), 10)
                queued += 1
        print(f"{queued} frames queued before the end")
    finally:
        await frames.aclose()
        await source.aclose()


@pytest.mark.parametrize(
    "source, sink",
    [
        ("track:alice", "wav:{missing}/out.wav"),
        ("track:alice", "file:{missing}/out.mp4"),
        # a templated output's folder is made; one that cannot be (a file is in the way) is refused
        ("track:guest-*", "file:{missing}/{{identity}}.mp4"),
    ],
)
async def test_a_bad_output_folder_fails_before_joining(livekit_server, tmp_path, source, sink):
    """Nobody is in the room and wait= is forever: only a check before joining can end this run (before:
    it waited for alice, and would have failed at her first frame)."""
    missing = tmp_path / "no" / "such"
    (tmp_path / "no").write_text("a file, not a folder")
    started = time.monotonic()
    code, _, err = await lkplug(
        livekit_server, "run", "--source", source, "--sink", sink.format(missing=missing), timeout=30
    )
    print(f"failed after {time.monotonic() - started:.2f} s")  # reported, not asserted
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"lkplug: error: cannot write {missing}/"), err
    assert "joining room" not in err


@pytest.mark.parametrize(
    "source, sinks, why",
    [
        ("track:alice", ["wav:{tmp}"], "it is a folder"),  # an existing folder given as the output file
        ("track:alice", ["file:/sys/out.mp4"], "folder /sys is not writable"),  # sysfs: not even root
        ("track:alice", ["wav:/proc/version"], "/proc/version is not writable"),  # a file refusing writes
        # a track sink joins the room as it starts: the file after it is checked before that
        ("track:alice", ["track:echo", "wav:{tmp}"], "it is a folder"),
        # a fan-out's output is named as written (before: "cannot write /sys/identity.wav")
        ("track:guest-*", ["wav:/sys/{{identity}}.wav"], "folder /sys is not writable"),
    ],
)
async def test_an_existing_but_unwritable_output_fails_before_joining(
    livekit_server, tmp_path, source, sinks, why
):
    """The folder exists, so only trying it tells (before: each passed the check, the run joined the
    room and waited for alice, and would have failed at her first frame)."""
    sinks = [sink.format(tmp=tmp_path) for sink in sinks]
    started = time.monotonic()
    args = [arg for sink in sinks for arg in ("--sink", sink)]
    code, _, err = await lkplug(livekit_server, "run", "--source", source, *args, timeout=30)
    print(f"failed after {time.monotonic() - started:.2f} s")  # reported, not asserted
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    path = sinks[-1].split(":", 1)[1]
    assert len(lines) == 1 and lines[0].startswith(f"lkplug: error: cannot write {path}"), err
    assert why in lines[0], err
    assert "joining room" not in err


@pytest.mark.parametrize(
    "source, procs",
    [("track:alice", []), ("track:*", ["--proc", "mix"]), ("track:guest-*", [])],
)
async def test_two_sinks_into_one_file_are_refused_before_joining(livekit_server, tmp_path, source, procs):
    """Nobody is in the room and wait= is forever: only a check before joining ends this run (before:
    `--sink wav:x.wav --sink wav:x.wav` joined, recorded, and failed at the end with FileNotFoundError
    on the second rename). A fan-out's template is filled alike for every stream: refused up front."""
    out = f"{tmp_path}/{{identity}}.wav" if source.endswith("-*") else f"{tmp_path}/x.wav"
    code, _, err = await lkplug(
        livekit_server, "run", "--source", source, *procs, "--sink", f"wav:{out}", "--sink", f"wav:{out}",
        timeout=30,
    )  # fmt: skip
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "both write" in lines[0], err
    assert "joining room" not in err
    assert list(tmp_path.iterdir()) == []


def sine_fit(data: np.ndarray, rate: int, near: float) -> tuple[float, float]:
    """(frequency in Hz, THD+N in dB) of a sine: the frequency whose least-squares sine fits best
    (searched 0.01 Hz apart around ``near``), and the power of what that sine leaves, relative to the
    whole signal. Silence has none of the sine: 0 dB, the worst (0/0 would be NaN, and one NaN block
    made the median of :func:`sine_quality` NaN, failing a run for one moment of silence)."""
    if not np.any(data):
        return near, 0.0
    t = np.arange(len(data)) / rate
    best = (0.0, near)
    for freq in np.arange(near - 2.0, near + 2.0, 0.01):
        basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
        coef = basis.T @ data
        best = max(best, (float(coef @ coef), freq))
    freq = best[1]
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    fitted = basis @ np.linalg.lstsq(basis, data, rcond=None)[0]
    residual = data - fitted
    return freq, 10 * np.log10(np.mean(residual**2) / np.mean(data**2))


def sine_quality(data: np.ndarray, rate: int, near: float, block: float = 0.25) -> tuple[float, float]:
    """The median over ``block``-second blocks of :func:`sine_fit`: a receiver's jitter buffer may
    stretch or conceal a moment (more so on a busy machine), which a fit over the whole recording
    would count against the sender; a fault of the sender (a wrong rate, a click every frame) is in
    every block."""
    size = int(block * rate)
    fits = [sine_fit(data[i : i + size], rate, near) for i in range(0, len(data) - size + 1, size)]
    freqs, thd_ns = zip(*fits, strict=True)
    return float(np.median(freqs)), float(np.median(thd_ns))


def past_fade_in(heard: np.ndarray) -> np.ndarray:
    """What a listener heard from 20 ms after the tone began, its first sample within 30 dB of the
    loudest (a stray sample of noise may come before it): the receiver fades a stream in over its
    first Opus frame (20 ms), so the 10 ms after the first that sounds may still be down (run 14 of a
    series: 3.3 dB down, in phase: no break)."""
    loud = np.abs(heard) > np.abs(heard).max() / 32
    return heard[np.flatnonzero(loud)[0] + RATE // 50 :]


def tone_breaks(data: np.ndarray, rate: int, freq: float, window: float = 0.01) -> list[tuple]:
    """Where a steady tone of ``freq`` breaks, per ``window`` seconds: (start in s, level against the
    median in dB, phase turn from the window before in degrees) of each window more than 3 dB down or
    turned more than 20 degrees. A sine's own windows keep their phase against a clock of ``freq``
    (a whole recording of a clean run: within 3 degrees and 0.5 dB); a dropout the receiver concealed
    dips, and what follows comes late: 10 ms of 440 Hz late is a 144 degree turn."""
    size = int(window * rate)
    t = np.arange(len(data)) / rate
    clock = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    starts = range(0, len(data) - size + 1, size)
    fits = np.array([data[i : i + size] @ clock[i : i + size] for i in starts])
    levels = 20 * np.log10(np.hypot(fits[:, 0], fits[:, 1]) + 1e-12)
    levels -= np.median(levels)
    turns = np.degrees(np.diff(np.arctan2(fits[:, 1], fits[:, 0]), prepend=np.arctan2(*fits[0, ::-1])))
    turns = (turns + 180) % 360 - 180
    return [
        (round(i / rate, 2), round(float(level), 1), round(float(turn)))
        for i, level, turn in zip(starts, levels, turns, strict=True)
        if level < -3 or abs(turn) > 20
    ]


@pytest.mark.parametrize("rate", [22050, 44100, 11025, 48000])
async def test_a_tone_at_any_rate_is_published_cleanly(livekit_server, livekit_join, tmp_path, rate):
    """Before: 22050 Hz went out in 220-sample frames taken as 10 ms: 439.0 Hz, and a click every frame.
    48 kHz is the reference the others must match. Before too: 44.1 and 22.05 kHz had two dropouts in
    the first 2.5 s, each a 10 ms window -14 to -37 dB down and the tone after it turned -140 degrees
    (the SDK's capture queue started empty and ran dry between the bursts soxr makes), which the
    median over 0.25 s blocks hid: the whole recording is checked 10 ms at a time."""
    clip = tmp_path / "tone.wav"
    soundfile.write(clip, to_s16(sine(440, 6.0, rate)), rate)
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            "run",
            "--source",
            f"file:{clip}",
            "--sink",
            "track:tts,wait=10",
            "--identity",
            "tts",
        )
    )
    heard = await bob.receive_audio("tts", seconds=4.5)
    code, _, err = await publish
    assert code == 0, err
    heard = heard.astype(np.float64)
    tone = past_fade_in(heard)
    breaks = tone_breaks(tone, RATE, 440.0)
    print(f"{rate} Hz: {len(tone) / RATE:.2f} s, breaks {breaks}")
    assert breaks == [], err
    freq, thd_n = sine_quality(steady(heard)[: 3 * RATE], RATE, 440.0)
    print(f"{rate} Hz: {freq:.2f} Hz, THD+N {thd_n:.1f} dB")
    assert freq == pytest.approx(440.0, abs=0.2)
    assert thd_n < -30


async def test_audio_sent_late_is_reported_where_listeners_heard_silence(
    livekit_server, livekit_join, tmp_path
):
    """The publishing process held up 0.6 s at 1 s of a tone (a stage blocks the event loop, as a busy
    machine does), longer than the 0.2 s capture queue lasts: the SDK sent nothing for some 0.4 s, and
    bob heard the tone break there. Before: exit 0 and not a word of it."""
    clip = tmp_path / "tone.wav"
    soundfile.write(clip, to_s16(sine(440, 4.0, RATE)), RATE)
    hooks = os.path.join(os.path.dirname(__file__), "live_hooks.py")
    bob = await livekit_join("bob")
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "-p", hooks, "--source", f"file:{clip}", "--proc", "holdup:at=1,seconds=0.6"),
            *("--sink", "track:tts,wait=10", "--identity", "tts"),
        )
    )
    heard = await bob.receive_audio("tts", seconds=3.5)
    code, _, err = await publish
    assert code == 0, err
    dry = [line for line in err.splitlines() if "ran dry" in line]
    assert len(dry) == 1 and dry[0].startswith("lkplug: warning: tts: "), err
    total = float(dry[0].split("ran dry for ")[1].split(" ms")[0])
    assert 300 <= total <= 600, err  # 0.6 s held up less the 0.2 s queue, and what the hold-up delayed
    assert "before 1.0" in dry[0], err  # the frame of 1.0 s (or one 10 ms later) came after the silence
    heard = heard.astype(np.float64)
    breaks = tone_breaks(past_fade_in(heard), RATE, 440.0)
    assert breaks and 0.9 <= breaks[0][0] <= 1.6, (breaks, err)  # bob heard it there first


@pytest.mark.untimed
async def test_a_typo_in_the_identity_gets_a_hint_of_who_is_there(livekit_server, livekit_join, tmp_path):
    """After 10 s of waiting, once: who is in the room and what they publish; the wait goes on as
    wait= says (before: "waiting for alcie/first audio" and nothing more, forever with wait=0)."""
    alice = await livekit_join("alice")
    await alice.publish_sine(440, queue_ms=SINE_QUEUE_MS, name="mic")
    await livekit_join("bob")
    code, _, err = await lkplug(
        livekit_server, "run", "--source", "track:alcie,wait=13", "--sink", f"wav:{tmp_path}/x.wav"
    )
    assert code == 1, err
    hints = [line for line in err.splitlines() if "still waiting for alcie" in line]
    assert len(hints) == 1, err
    assert "alice (microphone 'mic')" in hints[0] and "bob (publishes nothing)" in hints[0], err
    assert "did not appear in room test within 13 s" in err.splitlines()[-1], err


class Sounding(int):
    """A count of sounding frames that says, in a failed assertion, where the silent ones were."""

    def __new__(cls, flags: list[bool]):
        count = super().__new__(cls, sum(flags))
        count.flags = flags
        return count

    def __repr__(self) -> str:
        first = self.flags.index(True) if any(self.flags) else len(self.flags)
        runs, start = [], None  # silent runs after the first sound, as (frame, length)
        for index, flag in enumerate([*self.flags[first:], True], first):
            if not flag and start is None:
                start = index
            elif flag and start is not None:
                runs.append((start, index - start))
                start = None
        return f"{int(self)} of {len(self.flags)} frames sounding from frame {first}; silent runs {runs}"


async def sounding_frames(stream, until) -> tuple[Sounding, object]:
    """How many 10 ms frames of ``stream`` (a listener's playout) had the tone in them (over
    -40 dBFS) while ``until`` ran and for a second after (what is still on the way), and its result."""
    flags: list[bool] = []

    async def listen():
        async for event in stream:
            flags.append(bool(level_dbfs(np.frombuffer(event.frame.data, np.int16)) > -40))

    listener = asyncio.ensure_future(listen())
    result = await until
    await asyncio.sleep(1.0)
    listener.cancel()
    await stream.aclose()
    return Sounding(flags), result


async def test_wait_for_holds_a_file_until_the_named_listener_subscribes(
    livekit_server, livekit_join, tmp_path
):
    """Another participant subscribing to everything (as the demo's alice does) does not start the
    playback; carol, joining 4 s later, hears the file from its start (before: 6.34 s of 10 s)."""
    seconds = 6.0
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, to_s16(sine(660, seconds, RATE)), RATE)
    await livekit_join("alice")  # auto-subscribes to what is published
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:music,wait_for=carol,wait=60"),
            *("--identity", "music"),
        )
    )
    await asyncio.sleep(4)
    carol = await livekit_join("carol")
    from livekit import rtc

    stream = rtc.AudioStream(await carol.remote_track("music"), sample_rate=RATE, num_channels=1)
    sounding, (code, _, err) = await sounding_frames(stream, publish)
    assert code == 0, err
    assert "waiting for carol to listen to music" in err
    assert sounding * 0.01 >= seconds * 0.97, repr(sounding)  # the whole file, as the real-time test


async def test_a_publisher_holding_for_a_listener_ends_when_replaced(livekit_server, livekit_join):
    """wait_for= with no time limit holds until carol listens, or until the session ends (before: a
    namesake replaced it and it held on for ever: the hold heard only of subscriptions)."""
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", "tone:duration=30", "--sink", "track:music,wait_for=carol"),
            *("--identity", "music"),
            timeout=30,
        )
    )
    alice = await livekit_join("alice")
    await alice.remote_track("music", timeout=30)  # published: holding for carol
    await livekit_join("music")  # takes its identity
    code, _, err = await publish
    assert code == 1, err
    assert "waiting for carol to listen to music" in err and "replaced lkplug" in err, err


async def test_a_listener_of_either_track_releases_an_audio_and_video_file(
    livekit_server, livekit_join, tmp_path
):
    """A file with audio and video, published with wait=: carol subscribes to the audio only and
    hears the tone from its start. Before, the sink published the video at its first picture and
    waited there again, holding the audio: a recorder of the audio got 4 s of silence, exit 0."""
    seconds = 4.0
    clip = tmp_path / "av.mp4"
    bars = colour_bars()[..., :3].copy()
    tone = to_s16(sine(660, seconds, RATE))[:, 0]
    write_clip(clip, tone, RATE, dict.fromkeys(range(round(seconds * 15)), bars), audio_codec="pcm_s16le")
    carol = await livekit_join("carol", auto_subscribe=False)
    publish = asyncio.ensure_future(
        lkplug(
            livekit_server,
            *("run", "--source", f"file:{clip}", "--sink", "track:music,simulcast=false,wait=20"),
            *("--identity", "music"),
        )
    )
    from livekit import rtc

    stream = rtc.AudioStream(await carol.remote_track("music"), sample_rate=RATE, num_channels=1)
    sounding, (code, _, err) = await sounding_frames(stream, publish)
    assert code == 0, err
    assert "nobody subscribed" not in err, err  # released by carol's audio subscription
    assert sounding * 0.01 >= seconds * 0.97, repr(sounding)  # the whole tone, as the wait_for test


def tone_peak_db(data: np.ndarray, rate: int, freq: float, block: float = 0.25) -> float:
    """The peak level (dBFS) of the ``freq`` component of ``data``: a least-squares fit per ``block``
    seconds, the median of them (a moment the receiver concealed does not decide it)."""
    size = int(block * rate)
    t = np.arange(size) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    levels = []
    for start in range(0, len(data) - size + 1, size):
        coef = np.linalg.lstsq(basis, data[start : start + size], rcond=None)[0]
        levels.append(20 * np.log10(np.hypot(*coef) + 1e-12))
    return float(np.median(levels))


async def test_a_stereo_file_is_heard_as_its_mono_downmix(livekit_server, livekit_join, tmp_path):
    """Room audio is mono for now (README): the SDK cannot mark a track stereo, so libwebrtc encodes it
    mono, and it decodes mono (its answer has no stereo=1). What arrives is the downmix of both
    channels, as ``ffmpeg -i st.wav -ac 1`` makes it: each tone of a left 440 Hz / right 660 Hz file
    (-6 dBFS peaks) at -12.04 dBFS (ffmpeg 5.1), not one channel alone. When stereo works, this test
    is to become "arrives stereo, its channels apart"."""
    clip, out = tmp_path / "st.wav", tmp_path / "out.wav"
    t = np.arange(6 * RATE) / RATE
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], axis=1)
    soundfile.write(clip, to_s16(stereo), RATE)
    record = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:st", "--sink", f"wav:{out}", "-t", "4")
    )
    code, _, err = await lkplug(
        livekit_server, "run", "--source", f"file:{clip}", "--sink", "track:st,wait=30", "--identity", "st"
    )
    assert code == 0, err
    code, _, err = await record
    assert code == 0, err
    data, rate = soundfile.read(out, always_2d=True)
    assert data.shape[1] == 1  # mono stays mono, and stereo is mono for now
    heard = steady(data[:, 0])[RATE // 2 :]  # past the decoder's fade-in (longer here: 0.75 s)
    for freq in (440, 660):
        assert tone_peak_db(heard, rate, freq) == pytest.approx(-12.04, abs=1.0), freq


@pytest.mark.parametrize(
    ("sink", "sig"), [("track:t,wait=600", signal.SIGINT), ("track:t,wait_for=bobby", signal.SIGTERM)]
)
async def test_a_signal_ends_a_wait_for_a_listener(livekit_server, sink, sig):
    """The first SIGINT or SIGTERM ends a publisher's wait for a listener as it ends any run: exit 130,
    its sinks closed. Before: it was ignored (a wait=60 still ran at 34 s, wait_for waited its
    whole time), so the run ends here only through the test's timeout."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lkplug", "run", "--source", "tone:duration=5", "--sink", sink),
        *("--identity", "t"),
        env=server_env(livekit_server),
        stderr=asyncio.subprocess.PIPE,
    )
    said = []
    try:
        async with asyncio.timeout(60):
            while not any("waiting for" in line for line in said):
                line = await process.stderr.readline()
                assert line, "".join(said)  # it ended before it waited
                said.append(line.decode())
            process.send_signal(sig)
            said.append((await process.stderr.read()).decode())
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = "".join(said)
    assert code == 130, err
    assert "stopped by signal" in err, err  # the run's own end: its sinks closed (the track unpublished)
    assert "Traceback" not in err, err
