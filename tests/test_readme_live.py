"""README's live section as written, every command at once against a dev server with its demo alice
(room standup): records, a publish-back, a file played into the room, a fan-out, a camera recording,
and a 1280x720 file published and recorded again. The running ones are stopped with Ctrl-C, as a user
would; every output must be valid and right, and the server's log free of tracebacks."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from lkplug.testing import dominant_frequency, sine, to_s16
from lkplug_livekit.devserver import server_errors
from lkplug_livekit.devserver.peers import BARS, Peer, bar_colours, colour_bars
from lkplug_livekit.devserver.process import DevServerProcess

pytestmark = pytest.mark.live
README = Path(__file__).resolve().parent.parent / "README.md"


def live_commands() -> list[list[str]]:
    block = re.search(r"<!-- live-commands -->\s*```sh\n(.+?)\n```", README.read_text(), re.S).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("lkplug ")]


def make_talk(path: Path, seconds: int = 5, fps: int = 15) -> None:
    """1280x720 colour bars and a 330 Hz tone."""
    tone = to_s16(sine(330, seconds, 48000)).reshape(1, -1)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "mono"
        bars = colour_bars(1280, 720)[..., :3].copy()
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(bars, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def assert_bars(path: Path, size: tuple[int, int]) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == size
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(pictures) >= 10, len(pictures)
    for seen, sent in zip(bar_colours(pictures[-1]), BARS, strict=True):
        assert np.abs(np.subtract(seen, sent)).max() < 40, bar_colours(pictures[-1])


async def test_the_live_section_runs_side_by_side(tmp_path):
    commands = live_commands()
    assert len(commands) == 7 and all(c[:3] == ["run", "--room", "standup"] for c in commands), commands
    soundfile.write(tmp_path / "music.flac", to_s16(sine(660, 3.0, 48000)), 48000)
    make_talk(tmp_path / "talk.mp4")
    server = await DevServerProcess(demo=True, room="standup").start()
    guest = None
    processes = []
    try:
        # a guest who only talks (the demo alice subscribes to everything already)
        guest = await Peer.join(server.url, server.token("guest-a", "standup"), auto_subscribe=False)
        await guest.publish_sine(550)
        env = {
            **os.environ,
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": server.api_key,
            "LIVEKIT_API_SECRET": server.api_secret,
        }
        for args in commands:
            processes.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "lkplug", *args),
                    cwd=tmp_path,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        errors = [asyncio.ensure_future(p.stderr.read()) for p in processes]
        # the file publishers end by themselves (music 3 s, talk 5 s, at real time)
        ending = [p for p, args in zip(processes, commands, strict=True) if args[-3].startswith("file:")]
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in ending)), 90)
        await asyncio.sleep(2)  # the talk recorder sees talk leave
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)  # Ctrl-C
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60)
        texts = [(await e).decode() for e in errors]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
        if guest is not None:
            await guest.close()
        await server.stop()
    for args, code, err in zip(commands, codes, texts, strict=True):
        assert code in (0, 130), (args, err)
        assert "Traceback" not in err and "error" not in err.lower(), (args, err)
    await asyncio.sleep(0.2)
    assert not server_errors(server.lines), server_errors(server.lines)
    data, rate = soundfile.read(tmp_path / "alice.wav")
    assert len(data) > 2 * rate and dominant_frequency(data[rate // 2 :], rate) == pytest.approx(440, abs=2)
    data, rate = soundfile.read(tmp_path / "rec" / "guest-a-microphone.wav")
    assert len(data) > 2 * rate and dominant_frequency(data[rate // 2 :], rate) == pytest.approx(550, abs=2)
    assert_bars(tmp_path / "alice.mp4", (320, 240))
    assert_bars(tmp_path / "talk_rec.mp4", (1280, 720))  # recorded whole, at the size published
