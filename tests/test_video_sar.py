"""Non-square pixels: the sample aspect ratio (FFmpeg's SAR) read from a file, kept by the file sink,
adjusted by scale: as FFmpeg's scale filter does, and turned with the picture. Inputs are made with
PyAV; the expected values are the ffmpeg 5.1 CLI's for the same input (ffprobe -show_entries
stream=width,height,sample_aspect_ratio,display_aspect_ratio)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import run_lkplug


def clip(path, width: int, height: int, sar: Fraction | None, rotation: int = 0) -> None:
    """Five pictures of H.264 (in ``path``'s container) stored ``width`` x ``height`` with SAR
    ``sar`` (None: not stated, FFmpeg's 0:1), with a display matrix turning them ``rotation``
    degrees when given."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((height * 3 // 2, width), 128, np.uint8), "yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def written(path) -> tuple[int, int, str]:
    """(width, height, SAR) of the first video stream as FFmpeg reads it back (container over
    bitstream, av_guess_sample_aspect_ratio); the SAR as ffprobe prints it, N/A when unstated."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sar = stream.sample_aspect_ratio
        return stream.width, stream.height, f"{sar.numerator}:{sar.denominator}" if sar else "N/A"


def run(*args: str):
    result = run_lkplug("run", "-q", *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_a_file_to_a_file_keeps_the_sar(ext, tmp_path):
    source, out = tmp_path / "ana.mp4", tmp_path / f"out.{ext}"
    clip(source, 720, 480, Fraction(32, 27))
    run("--source", f"file:{source}", "--sink", f"file:{out}")
    # ffmpeg -i ana.mp4 out.{mp4,mov,mkv}: 720x480 SAR 32:27 DAR 16:9 (lkplug before: N/A, shown 3:2)
    assert written(out) == (720, 480, "32:27")


@pytest.mark.parametrize(
    "size, sar, scale, expected",
    # ffmpeg -i IN.mp4 -vf scale=W:H out.mp4 (scale=-2:H for a side left out), ffprobe of out.mp4;
    # lkplug before: the sizes alike, SAR N/A each time (the 16:9 picture shown 3:2, 4:3, ...)
    [
        ((720, 480), Fraction(32, 27), "width=640,height=360", (640, 360, "1:1")),  # scale=640:360
        ((720, 480), Fraction(32, 27), "height=360", (540, 360, "32:27")),  # scale=-2:360
        ((720, 480), Fraction(32, 27), "width=640", (640, 426, "71:60")),  # scale=640:-2
        ((1280, 720), Fraction(1, 1), "width=640,height=360", (640, 360, "1:1")),
        ((1280, 720), Fraction(1, 1), "width=640,height=480", (640, 480, "4:3")),  # DAR stays 16:9
        ((720, 480), None, "width=640,height=360", (640, 360, "N/A")),  # unstated stays unstated
        ((720, 480), None, "width=640", (640, 426, "N/A")),
    ],
)
def test_scale_keeps_the_display_aspect_as_ffmpegs_scale_filter(size, sar, scale, expected, tmp_path):
    source, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    clip(source, *size, sar)
    run("--source", f"file:{source}", "--proc", f"scale:{scale}", "--sink", f"file:{out}")
    assert written(out) == expected


def test_a_quarter_turn_turns_the_sar(tmp_path):
    source, out = tmp_path / "rot.mp4", tmp_path / "out.mp4"
    clip(source, 720, 480, Fraction(32, 27), rotation=90)
    run("--source", f"file:{source}", "--sink", f"file:{out}")
    # ffmpeg -i rot.mp4 out.mp4 (autorotate, its transpose filter inverts the SAR): 480x720 SAR
    # 27:32 DAR 9:16 (lkplug before: 480x720 N/A)
    assert written(out) == (480, 720, "27:32")


def test_explain_shows_the_sar_scale_gives(tmp_path):
    source = tmp_path / "ana.mp4"
    clip(source, 720, 480, Fraction(32, 27))
    result = run("--source", f"file:{source}", "--proc", "scale:width=640", "--sink", "null", "--explain")
    # ffmpeg -v verbose -i ana.mp4 -vf scale=640:-2 -f null -: "w:720 h:480 ... sar:32/27 -> w:640
    # h:426 ... sar:71/60"
    assert "720x480 yuv420p, SAR 32:27" in result.stdout
    assert "640x426 yuv420p, SAR 71:60" in result.stdout


def test_webm_says_it_cannot_keep_non_square_pixels(tmp_path):
    source, out = tmp_path / "ana.mp4", tmp_path / "out.webm"
    clip(source, 720, 480, Fraction(32, 27))
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i ana.mp4 out.webm stores DisplayWidth 853 (ffprobe: SAR 853:720 DAR 853:480); lkplug
    # cannot (PyAV sets no AVStream SAR, which the Matroska muxer reads), so it says so, once, with
    # the size to scale to for square pixels (854: 853.3 to an even number, as scale=-2 rounds)
    # (before: silent, the picture shown 3:2)
    told = [line for line in result.stderr.splitlines() if "pixel aspect ratio" in line]
    assert len(told) == 1
    assert "SAR 32:27" in told[0] and "scale:width=854,height=480" in told[0]
    result = run_lkplug(
        "run", "--source", f"file:{source}", "--proc", "scale:width=854,height=480", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    assert "pixel aspect ratio" not in result.stderr  # 1280:1281 is square within FFmpeg's 0.4%


@pytest.mark.shared_media
@pytest.mark.parametrize(
    "name, procs, expected",
    # ffmpeg -i NAME out.mp4 (-vf scale=10:6 for the 10x5 one, whose odd height libx264 refuses);
    # lkplug before: the sizes alike, SAR N/A
    [
        ("fc__matroska.mkv", (), (16, 8, "7:8")),  # Matroska's display size over the VUI's 9:10
        ("fc__flash.flv", (), (16, 8, "9:10")),  # from the H.264 VUI
        ("fc__xvid.avi", ("--proc", "scale:width=10,height=6"), (10, 6, "27:25")),  # 9:10 * 6/5
    ],
)
def test_real_files_keep_their_sar_as_ffmpeg(shared_media, name, procs, expected, tmp_path):
    out = tmp_path / "out.mp4"
    run("--source", f"file:{shared_media / 'files' / name}", *procs, "--sink", f"file:{out}")
    assert written(out) == expected


@pytest.mark.live
def test_a_track_says_it_shows_non_square_pixels_square(tmp_path):
    source = tmp_path / "ana.mp4"
    clip(source, 720, 480, Fraction(32, 27))
    result = run_lkplug("run", "--devserver", "--source", f"file:{source}", "--sink", "track:cam")
    assert result.returncode == 0, result.stderr
    # WebRTC carries no SAR: a receiver shows the 720x480 pictures 3:2 (ffmpeg shows them 16:9: 854
    # wide, 853.3 to an even number as scale=-2 rounds); said once (before: silent)
    told = [line for line in result.stderr.splitlines() if "pixel aspect ratio" in line]
    assert len(told) == 1
    assert "SAR 32:27" in told[0] and "scale:width=854,height=480" in told[0]
