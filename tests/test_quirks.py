"""Files with real-world quirks come out right (issue 11): timing, channel layouts, picture metadata,
sample formats, odd headers, and runs that cannot do what was asked.

Every input is made here with PyAV, numpy and soundfile. Each expected value is what the ffmpeg CLI
(5.1, on the machine this was written on) gives for the same input; the comment beside it says which
command measured it."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile
from conftest import run_lkplug

RATE = 48000


# media made here ------------------------------------------------------------------------------


def click_track(seconds: float, clicks: list[float], rate: int = RATE, channels: int = 1) -> np.ndarray:
    """Silence with a 2 ms full-scale-ish burst at each time in ``clicks`` (int16, (n, channels))."""
    data = np.zeros((round(seconds * rate), channels), np.int16)
    for at in clicks:
        start = round(at * rate)
        data[start : start + rate // 500] = 20000
    return data


def grey_picture(width: int, height: int, value: int = 128) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def write_av(
    path,
    video_times: list[float] | None = None,
    audio: np.ndarray | None = None,
    audio_start: float = 0.0,
    drop: tuple[float, float] | None = None,
    size: tuple[int, int] = (320, 240),
    audio_codec: str = "aac",
    video_codec: str = "libx264",
    picture=None,
    rate: int = RATE,
):
    """A file with pictures at ``video_times`` (seconds) and ``audio`` starting at ``audio_start``,
    in packets of 1024 samples; packets starting inside ``drop`` (start, end) are left out, the way
    lost packets leave a hole in a recording."""
    with av.open(str(path), "w") as container:
        streams = {}
        if video_times is not None:
            video = container.add_stream(video_codec, rate=30)
            video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
            video.codec_context.time_base = Fraction(1, 1000)
            video.options = {"preset": "ultrafast"} if video_codec == "libx264" else {}
            streams["video"] = video
        if audio is not None:
            layout = "mono" if audio.shape[1] == 1 else "stereo"
            streams["audio"] = container.add_stream(audio_codec, rate=rate, layout=layout)
        packets = []
        if video_times is not None:
            for time in video_times:
                image = picture(time) if picture else grey_picture(*size)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
                packets += streams["video"].encode(frame)
            packets += streams["video"].encode(None)
        if audio is not None:
            stream = streams["audio"]
            for start in range(0, len(audio), 1024):
                at = audio_start + start / rate
                if drop and drop[0] <= at < drop[1]:
                    continue
                chunk = np.ascontiguousarray(audio[start : start + 1024]).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=stream.layout)
                frame.sample_rate, frame.time_base = rate, Fraction(1, rate)
                frame.pts = round(at * rate)
                packets += stream.encode(frame)
            packets += stream.encode(None)
        packets.sort(key=lambda p: float(p.dts * p.time_base) if p.dts is not None else 0.0)
        for packet in packets:
            container.mux(packet)


# reading results --------------------------------------------------------------------------------


def origin(container) -> float:
    """The file's time 0: the earliest start of its streams (as ffprobe's start_time)."""
    starts = [float(s.start_time * s.time_base) for s in container.streams if s.start_time is not None]
    return min(starts, default=0.0)


def onsets(path, threshold: float = 0.2) -> list[float]:
    """Times (s, on the file's clock) where audio bursts begin."""
    with av.open(str(path)) as container:
        zero = origin(container)
        found, last = [], -1.0
        for frame in container.decode(container.streams.audio[0]):
            data = frame.to_ndarray()
            level = np.abs(data.astype(np.float32)).max(axis=0)
            if data.dtype == np.int16:
                level = level / 32768
            for index in np.flatnonzero(level > threshold):
                when = frame.time - zero + index / frame.sample_rate
                if when - last > 0.1:
                    found.append(when)
                last = when
    return found


def video_times(path) -> list[float]:
    """Each picture's time (s, on the file's clock)."""
    with av.open(str(path)) as container:
        zero = origin(container)
        return [frame.time - zero for frame in container.decode(container.streams.video[0])]


def run(*args):
    return run_lkplug("run", *args, "--quiet", timeout=120)


# timing ------------------------------------------------------------------------------------------


def test_audio_that_starts_after_the_video_is_kept_at_its_time(tmp_path):
    source, out = tmp_path / "late_audio.mp4", tmp_path / "out.mp4"
    write_av(source, [i / 30 for i in range(150)], click_track(3.0, [1.0]), audio_start=2.0)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i late_audio.mp4 out.mp4: an audio stream, click at 2.999 s; 150 pictures
    # (before: no audio stream at all)
    assert onsets(out) == pytest.approx([2.999], abs=0.02)
    assert len(video_times(out)) == 150


def test_video_that_starts_after_the_audio_is_kept_at_its_time(tmp_path):
    source, out = tmp_path / "late_video.mp4", tmp_path / "out.mp4"
    write_av(source, [2 + i / 30 for i in range(90)], click_track(5.0, [3.0]))
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i late_video.mp4 -fps_mode passthrough out.mp4: click at 3.0 s, 90 pictures from 2.0 s
    # (ffmpeg's default for mp4, cfr, repeats the first picture back to 0 s: 150 pictures)
    assert onsets(out) == pytest.approx([3.0], abs=0.02)
    times = video_times(out)
    assert len(times) == 90 and times[0] == pytest.approx(2.0, abs=0.02)


@pytest.fixture
def holed_mkv(tmp_path):
    """Video 0-6 s; audio with clicks at 1, 4 and 5 s and its packets from 2.5 to 3.5 s missing."""
    path = tmp_path / "hole.mkv"
    write_av(
        path,
        [i / 30 for i in range(180)],
        click_track(6.0, [1.0, 4.0, 5.0]),
        drop=(2.5, 3.5),
        audio_codec="pcm_s16le",
    )
    return path


def test_a_hole_in_the_audio_keeps_later_audio_at_its_time(holed_mkv, tmp_path):
    out = tmp_path / "out.mkv"
    result = run("--source", f"file:{holed_mkv}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i hole.mkv out.mkv: clicks at 1.003, 4.003, 5.003 s (before: 1.0, 2.98, 3.98)
    assert onsets(out) == pytest.approx([1.0, 4.0, 5.0], abs=0.02)


@pytest.mark.parametrize("sink", ["wav:{}", "file:{}"])
def test_a_wav_gets_silence_in_the_hole(holed_mkv, tmp_path, sink):
    out = tmp_path / "out.wav"
    result = run("--source", f"file:{holed_mkv}", "--sink", sink.format(out))
    assert result.returncode == 0, result.stderr
    # ffmpeg -i hole.mkv -af aresample=async=1 out.wav: clicks at 1.0, 4.0, 5.0 s
    # (plain ffmpeg -i hole.mkv out.wav gives 1.0, 2.997, 3.997, as lkplug did before)
    assert onsets(out) == pytest.approx([1.0, 4.0, 5.0], abs=0.02)
    assert soundfile.info(out).frames == pytest.approx(6 * RATE, abs=1024)


def test_variable_frame_rate_keeps_every_picture_at_its_time(tmp_path):
    source, out = tmp_path / "vfr.mkv", tmp_path / "out.mp4"
    times = [i / 60 for i in range(60)] + [1 + i / 5 for i in range(20)]  # 60 fps for 1 s, then 5 fps
    write_av(source, times)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i vfr.mkv -fps_mode passthrough out.mp4: 80 frames (ffmpeg's default cfr gives 149
    # by repeating pictures, -vsync vfr 51; lkplug before: 37)
    got = video_times(out)
    assert len(got) == 80
    np.testing.assert_allclose(got, times, atol=0.002)
