"""The file plugins' sinks say what they do: `lkplug inspect` shows the contracts the engine
negotiates with, and a path a sink cannot honour is refused in one line before anything runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug

from lkplug import Registry, build
from lkplug_av import CONTAINERS


def inspect(name: str, role: str) -> dict:
    result = run_lkplug("inspect", name, "--json")
    assert result.returncode == 0, result.stderr
    return next(entry for entry in json.loads(result.stdout) if entry["role"] == role)


def listed(text: str, what: str) -> set[str]:
    """The values a contract's description lists for ``what`` ("format s16/flt" -> {"s16", "flt"})."""
    part = next(piece.strip() for piece in text.split(",") if piece.strip().startswith(what + " "))
    return set(part[len(what) + 1 :].split("/"))


@pytest.mark.parametrize("subtype", ["pcm16", "pcm24", "float"])
def test_inspect_wav_shows_what_each_subtype_is_negotiated_with(subtype, tmp_path):
    # the wav sink said "format s16" only, while subtype=pcm24 and float take flt
    info = inspect("wav", "sink")
    sink = build(Registry.load(), "sink", f"wav:{tmp_path / 'x.wav'},subtype={subtype}").obj
    (taken,) = sink.accepts["audio"].sample_formats
    assert taken in listed(info["accepts"]["audio"], "format")
    help_text = next(p["help"] for p in info["params"] if p["name"] == "subtype")
    # "pcm16 takes s16; pcm24, float take flt": the clause that names the subtype names its format
    clause = next(part for part in help_text.split(";") if subtype in part)
    assert clause.rstrip(")").endswith(" " + taken), help_text
    plan = run_lkplug(
        "run", "--source", "tone:440", "--sink", f"wav:{tmp_path / 'x.wav'},subtype={subtype}", "--explain"
    )
    assert (f"format:{taken}  [inserted]" in plan.stdout) == (taken != "s16"), plan.stdout  # tone is s16


@pytest.mark.parametrize("container", [name for name, (*_, video) in CONTAINERS.items() if video])
def test_inspect_file_lists_every_pixel_format_a_container_takes(container, tmp_path):
    # it said yuv420p only, while libx264 (mp4, mov, mkv) takes nv12 and gray too
    shown = listed(inspect("file", "sink")["accepts"]["video"], "pixel format")
    sink = build(Registry.load(), "sink", f"file:{tmp_path / ('x.' + container)}").obj
    assert set(sink.accepts["video"].pixel_formats) <= shown


# pipes: "-" is standard output, as ffmpeg takes it --------------------------------------------------


def run_for_bytes(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """The CLI in a child process, its standard output kept as bytes (media)."""
    return subprocess.run([sys.executable, "-m", "lkplug", *args], capture_output=True, timeout=120, cwd=cwd)


def test_file_dash_with_a_format_writes_standard_output(tmp_path):
    # ffmpeg -f lavfi -i sine -f wav - writes the WAV to stdout, its sizes unknown (RIFF ffffffff);
    # before, lkplug wrote a file named "-"
    result = run_for_bytes(
        "run", "--quiet", "--source", "tone:440,duration=0.5", "--sink", "file:-,format=wav", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    raw = result.stdout
    assert raw[:8] == b"RIFF\xff\xff\xff\xff"
    data, rate = soundfile.read(io.BytesIO(raw), dtype="int16")
    reference = tmp_path / "ref.wav"  # the same run into a file
    made = run_lkplug("run", "--source", "tone:440,duration=0.5", "--sink", f"file:{reference}")
    assert made.returncode == 0, made.stderr
    assert rate == 48000 and np.array_equal(data, soundfile.read(reference, dtype="int16")[0])


def test_file_dash_into_matroska_decodes(tmp_path):
    result = run_for_bytes(
        "run", "--quiet", "--source", "tone:440,duration=1", "--sink", "file:-,format=mkv", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with av.open(io.BytesIO(result.stdout)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples - 48000) <= 960  # Opus: 20 ms frames


@pytest.mark.parametrize(
    "sink, words",
    [
        # ffmpeg -i in.wav - : "Unable to find a suitable output format for '-'"
        ("file:-", "name its container with format="),
        ("file:pipe:1", "name its container with format="),
        # ffmpeg -i in.wav -f mp4 - : "muxer does not support non seekable output"
        ("file:-,format=mp4", "cannot go into a pipe"),
        ("file:-,format=m4a", "cannot go into a pipe"),
        # libsndfile finishes a WAV by seeking back (and takes "-" for stdout itself)
        ("wav:-", "use file:-,format=wav"),
        ("wav:pipe:1", "use file:pipe:1,format=wav"),
    ],
)
def test_a_pipe_a_sink_cannot_write_is_refused_in_one_line(sink, words, tmp_path):
    assert_refused(sink, words, tmp_path)


def assert_refused(sink: str, words: str, folder) -> None:
    """``sink`` is refused before anything runs: one line with ``words``, exit 2, nothing written."""
    result = run_lkplug("run", "--source", "tone:440,duration=0.2", "--sink", sink, cwd=folder)
    line = assert_one_line_error(result)
    assert result.returncode == 2 and words in line
    assert result.stdout == "" and list(folder.iterdir()) == []


def test_a_file_named_dash_is_a_file(tmp_path):
    # ./- is a file named "-" (as for ffmpeg); libsndfile took the name "-" for stdout: wav:./- wrote
    # the WAV's first bytes to stdout and failed ("Error opening b'-'")
    for sink in ("wav:./-", "file:./-,format=wav"):
        result = run_lkplug(
            "run", "--source", "tone:440,duration=0.2", "--sink", sink, "--quiet", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        assert soundfile.info(tmp_path / "-").frames == 9600
        (tmp_path / "-").unlink()


@pytest.mark.parametrize("sink", ["wav:{}.wav", "file:{}.flac"])
def test_an_output_name_too_long_for_the_file_system_is_refused_before_the_run(sink, tmp_path):
    """A new user's 252-byte stem: the run went to its end under the shorter temporary name, then
    failed to rename it: "unexpected OSError: [Errno 36] File name too long", exit 1."""
    name = "x" * (256 - len(sink.rpartition(".")[2]) - 1)  # with its extension: 256 bytes
    result = run_lkplug("run", "--source", "tone:440,duration=0.2", "--sink", sink.format(name), cwd=tmp_path)
    line = assert_one_line_error(result)
    assert result.returncode == 1 and "its name is 256 bytes; the file system takes 255" in line, line
    assert list(tmp_path.iterdir()) == []


# options and codecs the file sink cannot honour ------------------------------------------------------


@pytest.mark.parametrize(
    "sink, words",
    [
        # ffmpeg -i in.wav -c:a aac out.mp3: "Could not find tag for codec aac in stream #0, codec not
        # currently supported in container" (exit 1, after opening its input); lkplug said
        # "failed: ValueError: 'mp3' format does not support 'aac' codec", exit 1
        ("file:o.mp3,codec=aac", "mp3 cannot hold aac (audio)"),
        ("file:o.m4a,codec=libopus", "m4a cannot hold libopus (audio)"),
        ("file:o.webm,video_codec=libx264", "webm cannot hold libx264 (video)"),
        # ffmpeg -b:a 64k into FLAC or PCM, and -crf into an audio-only file, is silently ignored;
        # so was it here (exit 0)
        ("file:o.flac,bitrate=64000", "bitrate= does not apply to flac, which is lossless"),
        ("file:o.wav,bitrate=64000", "bitrate= does not apply to pcm_s16le, which is lossless"),
        ("file:o.wav,crf=20", "crf= is for video; wav holds no video"),
        ("file:o.ogg,video_bitrate=100000", "video_bitrate= is for video; ogg holds no video"),
    ],
)
def test_an_option_the_file_sink_cannot_honour_is_refused(sink, words, tmp_path):
    assert_refused(sink, words, tmp_path)


@pytest.mark.parametrize(
    "sink", ["file:o.mkv,codec=flac", "file:o.mov,codec=alac", "file:o.mp3,bitrate=64000"]
)
def test_options_that_apply_still_run(sink, tmp_path):
    result = run_lkplug("run", "--quiet", "--source", "tone:440,duration=0.2", "--sink", sink, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / sink.split(":")[1].split(",")[0])) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


# default bit rates: the encoder's own, as the ffmpeg CLI leaves them -------------------------------


def write_noise(path, layout: str, seconds: float = 2.0) -> None:
    """An s16 WAV of white noise (seeded) at 0.3 of full scale, the same in every channel."""
    channels = av.AudioLayout(layout).nb_channels
    noise = np.random.default_rng(5).uniform(-0.3, 0.3, round(48000 * seconds))
    data = np.repeat(np.round(noise * 32767).astype(np.int16)[:, None], channels, 1)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=48000, layout=layout)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize(
    "layout, extension, ffmpeg_bytes",
    [
        # ffmpeg 5.1 -i noise.wav out.EXT on write_noise's 2 s files, their sizes (ls -l): aac 5.1 at
        # its 341 kb/s (lkplug before: 128k), libopus 7.1 at its 416k for 5 streams (before: 96k),
        # libmp3lame at lame's 128k (before: 192k: 49581 bytes), aac stereo at 128k (as before)
        ("5.1", "m4a", 87115),
        ("7.1", "opus", 83024),
        ("stereo", "mp3", 32877),
        ("stereo", "m4a", 33624),
    ],
)
def test_without_bitrate_the_encoder_keeps_its_own_default(layout, extension, ffmpeg_bytes, tmp_path):
    source, out = tmp_path / "noise.wav", tmp_path / f"out.{extension}"
    write_noise(source, layout)
    result = run_lkplug("run", "-q", "--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # within 2%: libopus's VBR and the muxers' headers differ a little between FFmpeg builds
    assert out.stat().st_size == pytest.approx(ffmpeg_bytes, rel=0.02)


@pytest.mark.parametrize(
    "extension, ffmpeg_peak",
    # ffmpeg 5.1 -i loud.wav out.EXT (a float WAV, a 440 Hz sine at 2.0: +6 dBFS), the decoded
    # output's peak: aac 2.086, libopus 2.03, libmp3lame (fltp) 1.901; lkplug clipped the input to
    # 1.0 first (peaks 1.073, 1.023, 0.966) and warned that it had
    [("m4a", 2.086), ("opus", 2.03), ("mp3", 1.901)],
)
def test_a_float_encoder_gets_samples_beyond_full_scale_unclipped(extension, ffmpeg_peak, tmp_path):
    source, out = tmp_path / "loud.wav", tmp_path / f"out.{extension}"
    data = 2.0 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    soundfile.write(source, np.stack([data, data], 1).astype(np.float32), 48000, subtype="FLOAT")
    result = run_lkplug("run", "-q", "--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    assert "clipped" not in result.stderr
    with av.open(str(out)) as container:
        peak = max(float(np.abs(frame.to_ndarray()).max()) for frame in container.decode(audio=0))
    assert peak == pytest.approx(ffmpeg_peak, rel=0.05)


def test_an_integer_encoder_still_clips_and_counts(tmp_path):
    # flac takes s16/s32: full scale is the most it can hold (ffmpeg 5.1 -i loud.wav out.flac: peak
    # 1.0, every sample beyond it saturated by libswresample); lkplug says how many it clipped
    source, out = tmp_path / "loud.wav", tmp_path / "out.flac"
    data = 2.0 * np.sin(2 * np.pi * 440 * np.arange(4800) / 48000)
    soundfile.write(source, data.astype(np.float32), 48000, subtype="FLOAT")
    result = run_lkplug("run", "-q", "--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    beyond = int(np.count_nonzero(np.abs(data.astype(np.float32)) > 1.0))
    assert f"clipped {beyond} samples" in result.stderr
    assert np.abs(soundfile.read(out)[0]).max() == pytest.approx(1.0, abs=1e-4)
