"""``fps:`` makes what FFmpeg's fps filter makes with its defaults (round=near, eof_action=round):
the same number of pictures, each the same source picture, from the same first slot.

Each input is made here with PyAV: picture i of a lossless FFV1 video in Matroska has luma 3*i, so
an output picture says which input picture it is. The expected lists were measured with ffmpeg 5.1
on the same files (the file made by ``clip`` below):

    ffmpeg -i in.mkv -vf fps=RATE -fps_mode passthrough -f rawvideo -pix_fmt yuv420p - (luma / 3)
    ffmpeg -i in.mkv -vf fps=RATE -fps_mode passthrough -f framecrc -                 (first pts)
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import assert_one_line_error, run_lkplug

from lkplug import Registry, RunContext, VideoFrame, build
from lkplug_av.source import FileSource

SIZE = 16
TIME_BASE = Fraction(1, 1000)  # Matroska's


def clip(path, times: list[float], audio_seconds: float = 0.0) -> None:
    """FFV1 pictures at ``times`` (s), picture i with luma 3*i; with ``audio_seconds``, a silent
    PCM track from 0 s too (so a video that starts later is late in its file, not shifted to 0)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=30)
        video.width, video.height, video.pix_fmt = SIZE, SIZE, "yuv420p"
        video.codec_context.time_base = TIME_BASE
        if audio_seconds:
            audio = container.add_stream("pcm_s16le", rate=8000, layout="mono")
            silence = np.zeros((1, round(8000 * audio_seconds)), np.int16)
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, 0
            for packet in [*audio.encode(frame), *audio.encode(None)]:
                container.mux(packet)
        for index, time in enumerate(times):
            planes = np.full((SIZE * 3 // 2, SIZE), 128, np.uint8)
            planes[:SIZE] = 3 * index
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = round(time / TIME_BASE), TIME_BASE
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)


def through_fps(path, rate: float) -> list:
    """The file source's pictures through ``fps:RATE``, as the engine hands them on."""
    source = FileSource(str(path), stream="v:0")
    source.bind(RunContext())
    fps = build(Registry.load(), "processor", f"fps:{rate}").obj

    async def collect():
        try:
            return [frame async for frame in source.frames()]
        finally:
            await source.aclose()

    out = []
    for frame in asyncio.run(collect()):
        out += fps.process(frame)
    return out + fps.flush()


def picture_numbers(frames) -> list[int]:
    return [round(int(frame.data[0, 0]) / 3) for frame in frames]


CFR30 = [i / 30 for i in range(60)]
CASES = {
    # 2 s at 30 fps into 25: picture 3, at 0.1 s, is at 2.5 slots, which FFmpeg rounds up to 3
    # (lkplug before rounded to even: slot 2 went to picture 3 and picture 2 was dropped)
    "30 to 25": (CFR30, 25, 0.0, 0.0, [
        0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29, 30,
        31, 32, 34, 35, 36, 37, 38, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 52, 53, 54, 55, 56, 58, 59]),
    "25 to 30": ([i / 25 for i in range(50)], 30, 0.0, 0.0, [
        0, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 12, 13, 14, 15, 16, 17, 17, 18, 19, 20, 21, 22,
        22, 23, 24, 25, 26, 27, 27, 28, 29, 30, 31, 32, 32, 33, 34, 35, 36, 37, 37, 38, 39, 40, 41, 42,
        42, 43, 44, 45, 46, 47, 47, 48, 49]),
    "29.97 to 24": ([i * 1001 / 30000 for i in range(60)], 24, 0.0, 0.0, [
        0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19, 20, 21, 23, 24, 25, 26, 28, 29, 30, 31,
        33, 34, 35, 36, 38, 39, 40, 41, 43, 44, 45, 46, 48, 49, 50, 51, 53, 54, 55, 56, 58, 59]),
    # 60 fps for 1 s, then 5 fps to 2.8 s, into 10 fps: the stream ends at 2.833 s (the last
    # picture's packet lasts 1/30 s), slot 28, where the last picture starts: it is dropped
    # (lkplug before: 29 pictures, the last one the 70th)
    "VFR to 10": ([i / 60 for i in range(60)] + [1 + i / 5 for i in range(10)], 10, 0.0, 0.0, [
        2, 8, 14, 20, 26, 32, 38, 44, 50, 56, 60, 60, 61, 61, 62, 62, 63, 63, 64, 64, 65, 65, 66, 66,
        67, 67, 68, 68]),
    # the file starts at 2 s: ffmpeg takes its start as 0, as lkplug's source does
    "starts at 2 s": ([2 + i / 30 for i in range(30)], 25, 0.0, 0.0, [
        0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29]),
    # the video starts 2 s after the audio: the first output slot is 50 (framecrc's first pts)
    "2 s after the audio": ([2 + i / 30 for i in range(30)], 25, 3.0, 2.0, [
        0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29]),
    # FFmpeg's rate syntax, read by FFmpeg's own parser (framecrc's "#tb 0: 1001/30000", pts 0, 1, 2, ...)
    # (lkplug before: "fps:rate='ntsc': expected a number", exit 2)
    "VFR to ntsc": ([i / 60 for i in range(60)] + [1 + i / 5 for i in range(10)], "ntsc", 0.0, 0.0, [
        0, 3, 5, 6, 9, 11, 12, 15, 17, 18, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49, 51,
        53, 55, 57, 59, 60, 60, 60, 60, 60, 60, 61, 61, 61, 61, 61, 61, 62, 62, 62, 62, 62, 62, 63, 63, 63,
        63, 63, 63, 64, 64, 64, 64, 64, 64, 65, 65, 65, 65, 65, 65, 66, 66, 66, 66, 66, 66, 67, 67, 67, 67,
        67, 67, 68, 68, 68, 68, 68, 68, 69]),
    "30 to 24000/1001": (CFR30, "24000/1001", 0.0, 0.0, [
        0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19, 20, 21, 23, 24, 25, 26, 28, 29, 30, 31,
        33, 34, 35, 36, 38, 39, 40, 41, 43, 44, 45, 46, 48, 49, 50, 51, 53, 54, 55, 56, 58, 59]),
    # ffmpeg's fps filter reads ntsc-film as the expression ntsc - film: 5976/1001 fps ("#tb 0: 1001/5976")
    "30 to ntsc-film": (CFR30, "ntsc-film", 0.0, 0.0, [2, 7, 12, 17, 22, 27, 32, 37, 42, 47, 52, 57]),
    "two pictures": ([0.0, 1 / 30], 25, 0.0, 0.0, [0, 1]),
    "one picture": ([0.0], 25, 0.0, 0.0, [0]),
}  # fmt: skip
# the rates ffmpeg's framecrc shows for the named ones (1 / "#tb")
EXACT = {
    "ntsc": Fraction(30000, 1001),
    "24000/1001": Fraction(24000, 1001),
    "ntsc-film": Fraction(5976, 1001),
}


@pytest.mark.parametrize("case", CASES)
def test_fps_picks_the_pictures_ffmpeg_picks(tmp_path, case):
    times, rate, audio_seconds, first, expected = CASES[case]
    path = tmp_path / "in.mkv"
    clip(path, times, audio_seconds)
    out = through_fps(path, rate)
    assert picture_numbers(out) == expected
    assert out[0].time == pytest.approx(first)
    step = 1 / float(EXACT.get(rate, rate))
    np.testing.assert_allclose([frame.time - first for frame in out], np.arange(len(out)) * step, atol=1e-9)
    assert all(frame.duration == pytest.approx(step) for frame in out)


def test_fps_through_the_cli_writes_ffmpegs_count(tmp_path):
    # the VFR case end to end: ffmpeg -i in.mkv -vf fps=10 out.mkv writes 28 pictures
    # (lkplug before: 29)
    source, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    clip(source, CASES["VFR to 10"][0])
    result = run_lkplug("run", "--source", f"file:{source}", "--proc", "fps:10", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 28


def test_fps_through_the_cli_writes_ntsc(tmp_path):
    # ffmpeg -i in.mkv -vf fps=30000/1001 out.mkv: 85 pictures, the stream's rate 30000/1001
    # (lkplug before: "fps:rate='30000/1001': expected a number", exit 2)
    source, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    clip(source, CASES["VFR to ntsc"][0])
    result = run_lkplug(
        "run", "--source", f"file:{source}", "--proc", "fps:30000/1001", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
        assert sum(1 for _ in container.decode(video=0)) == 85


@pytest.mark.parametrize("rate", ["qntsc", "30:1", "0.05", "25/0", "abc"])
def test_fps_refuses_what_ffmpegs_fps_filter_refuses_in_one_line(rate):
    # ffmpeg -vf fps=qntsc (and abc, 25/0): "Unable to parse option value", exit 1; ":" would set
    # another option of the filter; 0.05 is below lkplug's 0.1
    result = run_lkplug("run", "--source", "tone:440,duration=0.1", "--proc", f"fps:{rate}", "--sink", "null")
    assert result.returncode == 2, result.stderr
    assert f"fps:{rate}" in assert_one_line_error(result)


def test_a_last_picture_of_unknown_duration_lasts_as_long_as_the_one_before():
    # a live track's pictures carry no duration: 30 fps for 1 s into 25 fps ends where a 31st
    # picture would start, 1.0 s, slot 25, as for the same pictures with durations (ffmpeg takes a
    # picture's duration from the stream's frame rate when its packet gives none)
    fps = build(Registry.load(), "processor", "fps:25").obj
    pictures = [VideoFrame(np.full((2, 2), i, np.uint8), "gray", 2, 2, i / 30) for i in range(30)]
    out = [picture for frame in pictures for picture in fps.process(frame)] + fps.flush()
    assert len(out) == 25 and int(out[-1].data[0, 0]) == 29
