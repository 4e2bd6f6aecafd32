"""Damage in the middle of a file: what is lost, and where the audio after it lands.

lkplug drops what FFmpeg cannot decode and keeps the audio after it at its timestamp, as the ffmpeg
CLI does into a container with timestamps (mkv, mp4). Into a WAV the lost span is silence, so the
length and the sync with video are kept: that is ``ffmpeg -af aresample=async=1:min_hard_comp=0.001
:first_pts=0``; the plain ``ffmpeg -i bad.X out.wav`` closes the gap up instead, and everything after
the damage comes early. Each input is made here with PyAV (a quiet 440 Hz tone with clicks at 1, 2, 3
and 4 s, 5 s at 48 kHz), then 1 % of its bytes in the middle are overwritten with seeded random bytes;
the values in the comments were measured with ffmpeg 5.1 on exactly these files."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile
from conftest import run_lkplug
from test_quirks import click_track, onsets, write_av

RATE = 48000
CLICKS = [1.0, 2.0, 3.0, 4.0]
CODECS = {"flac": "flac", "mp3": "libmp3lame", "m4a": "aac", "opus": "libopus", "wav": "pcm_s16le"}


def signal() -> np.ndarray:
    """5 s: a 440 Hz tone at -20 dBFS (so no codec squeezes the file to nothing) and the clicks."""
    audio = click_track(5.0, CLICKS)
    tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(len(audio)) / RATE)).astype(np.int16)
    audio[:, 0] = np.where(audio[:, 0] != 0, audio[:, 0], tone)
    return audio


def spoil(path, start: int, size: int) -> None:
    """Overwrite ``size`` bytes from ``start`` with seeded random bytes."""
    content = bytearray(path.read_bytes())
    content[start : start + size] = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(content))


def damaged(folder, extension: str):
    path = folder / f"bad.{extension}"
    write_av(path, audio=signal(), audio_codec=CODECS[extension])
    size = path.stat().st_size
    spoil(path, size // 2, max(512, size // 100))
    return path


# extension: (samples, clicks) of lkplug's WAV = ffmpeg -i bad.X -af aresample=async=1:min_hard_comp=
# 0.001:first_pts=0 out.wav (the plain ffmpeg -i bad.X out.wav in the comment)
EXPECTED = {
    # FFmpeg's FLAC decoder finds the next frame by its sync code and the frame says its sample number:
    # the damaged frames (0.384 s) are silence. (plain: 221568 samples, clicks 1.0, 2.0, 2.616, 3.616;
    # ffmpeg 5.1's decoder also loses the click at 2.0 and makes one of noise at 2.576, FFmpeg 8's
    # in PyAV resyncs sooner and keeps it)
    "flac": (240000, [1.0, 2.0, 3.0, 4.0]),
    # MP3 has no timestamps: the demuxer counts the frames it finds, so the bytes it skips to find the
    # next one are lost time in both (48 ms); the frame that fails to decode is silence (24 ms).
    # (plain: 236207 samples, 2.904, 3.904; the noise at 2.549 is the damage decoded)
    "mp3": (237359, [1.0, 2.0, 2.549, 2.928, 3.928]),
    # four AAC packets fail to decode; the MP4 sample table keeps the time (plain: 236544, 2.915, 3.915)
    "m4a": (240640, [1.0, 2.0, 3.0, 4.0]),
    # four Ogg pages fail their CRC and are dropped, 1 s of audio with the click at 3 s; granule
    # positions keep the time (plain: 192000 samples, and the click of 4 s at 3.0)
    "opus": (240000, [1.0, 2.0, 4.0]),
    # PCM: damaged bytes are noise (the click at 2.5), nothing is lost (plain: the same)
    "wav": (240000, [1.0, 2.0, 2.5, 3.0, 4.0]),
}


@pytest.mark.parametrize("extension", EXPECTED)
def test_damage_leaves_the_audio_after_it_at_its_time(tmp_path, extension):
    source, out = damaged(tmp_path, extension), tmp_path / "out.wav"
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"wav:{out}", "--quiet")
    assert result.returncode == 0, result.stderr
    samples, clicks = EXPECTED[extension]
    assert soundfile.info(out).frames == samples
    assert onsets(out) == pytest.approx(clicks, abs=0.002)
    if extension != "wav":  # undecodable PCM does not exist: no warning
        assert "damaged input, decoded past it" in result.stderr


def audio_packets_between(path, start: float, end: float) -> list[tuple[int, int]]:
    """(byte offset, size) of the audio packets whose time is in [start, end)."""
    with av.open(str(path)) as container:
        return [
            (packet.pos, packet.size)
            for packet in container.demux(container.streams.audio[0])
            if packet.pts is not None and start <= float(packet.pts * packet.time_base) < end
        ]


@pytest.fixture
def damaged_clip(tmp_path):
    """H.264 at 30 fps for 5 s with the AAC clicks; the audio packets of 2.4-2.6 s (nine) spoiled."""
    path = tmp_path / "bad.mp4"
    write_av(path, [i / 30 for i in range(150)], signal())
    for offset, size in audio_packets_between(path, 2.4, 2.6):
        spoil(path, offset, size)
    return path


@pytest.mark.parametrize("extension", ["mp4", "mkv", "wav"])
def test_damaged_audio_beside_video_stays_in_sync(damaged_clip, tmp_path, extension):
    out = tmp_path / f"out.{extension}"
    result = run_lkplug("run", "--source", f"file:{damaged_clip}", "--sink", f"file:{out}", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "damaged input, decoded past it" in result.stderr
    # ffmpeg -i bad.mp4 out.mp4: clicks at 1.0, 2.0, 3.0, 4.0 and 150 pictures (out.mkv: 1.003 ...
    # 4.003); ffmpeg -i bad.mp4 out.wav: 2.808 and 3.808 after the damage, 231424 samples (the nine
    # spoiled packets, 192 ms, closed up: out of sync with the video by as much)
    assert onsets(out) == pytest.approx(CLICKS, abs=0.025)
    if extension == "wav":
        assert soundfile.info(out).frames == pytest.approx(5 * RATE, abs=1024)
    else:
        with av.open(str(out)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 150
