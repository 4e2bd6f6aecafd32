"""The built-in audio components, measured on generated signals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug

import lkplug
from lkplug.testing import dominant_frequency, level_dbfs, sine, to_s16


def test_stereo_to_mono_is_ffmpegs_downmix():
    # ffmpeg -i stereo_flt.wav -ac 1: mono = 0.7071 * (L + R) for float (libswresample does not
    # rescale float matrices); for s16 the matrix is scaled to 0.5 each so it cannot clip
    left, right = sine(300, 0.1, 48000, dbfs=-6), sine(500, 0.1, 48000, dbfs=-12)
    out, _ = lkplug.process(np.hstack([left, right]), 48000, "remix:1")
    np.testing.assert_allclose(out[:, 0], (left[:, 0] + right[:, 0]) * 0.7071, atol=1e-4)
    stereo = to_s16(np.hstack([left, right]))
    out, _ = lkplug.process(stereo, 48000, "remix:mono")
    np.testing.assert_allclose(out[:, 0], (stereo[:, 0] + stereo[:, 1].astype(float)) / 2, atol=1)


def test_mono_to_stereo_is_ffmpegs_upmix():
    # ffmpeg -i mono.wav -ac 2 (s16): each side is the mono signal times 0.7072 (measured)
    mono = sine(300, 0.1, 48000)
    out, _ = lkplug.process(mono, 48000, "remix:channels=2")
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_allclose(out[:, 0], mono[:, 0] * 0.7071, atol=1e-4)


def test_remix_takes_layout_names_and_refuses_others():
    out, _ = lkplug.process(sine(300, 0.01, 48000, channels=2), 48000, "remix:5.1(side)")
    assert out.shape[1] == 6
    with pytest.raises(lkplug.UsageError, match="not a channel count or an FFmpeg layout"):
        lkplug.process(sine(300, 0.01, 48000), 48000, "remix:surround-ish")


@pytest.mark.parametrize(
    "channels, words",
    [
        # ffmpeg 5.1 -i stereo.wav -ac 64 out.wav (and -ac 9), exit 1: "Rematrix is needed between
        # stereo and 64 channels but there is not enough information to do it" (libswresample: no
        # layout for the count); binaural is a layout PyAV's FFmpeg knows (ffmpeg 5.1 does not: "Error
        # parsing channel layout") and has no matrix for. lkplug before: exit 1 at the first frame,
        # "remix:64 ... failed: ArgumentError: Invalid argument returned 22"
        ("64", "FFmpeg has no layout of 64 channels to mix into"),
        ("9", "FFmpeg has no layout of 9 channels to mix into"),
        ("0", "FFmpeg has no layout of 0 channels to mix into"),
        ("binaural", "a layout libswresample has no matrix for"),
        ("surround-ish", "not a channel count or an FFmpeg layout name"),
    ],
)
def test_remix_refuses_a_layout_it_cannot_mix_into_before_the_run(channels, words, tmp_path):
    out = tmp_path / "out.wav"
    result = run_lkplug(
        "run", "--source", "tone:440,duration=0.1", "--proc", f"remix:{channels}", "--sink", f"wav:{out}"
    )
    line = assert_one_line_error(result)
    assert result.returncode == 2 and words in line, line
    assert "give a count (1 to 8, " in line and "layout name (mono, stereo, " in line  # what is allowed
    assert not out.exists()


@pytest.mark.parametrize("quality", ["quick", "lq", "mq", "hq", "vhq"])
def test_resample_keeps_the_frequency_and_the_length(quality):
    data = sine(1000, 1.0, 44100)
    out, rate = lkplug.process(data, 44100, f"resample:rate=16000,quality={quality}")
    assert rate == 16000 and len(out) == 16000
    assert abs(dominant_frequency(out, 16000) - 1000) < 2


def test_resampling_in_small_frames_equals_resampling_at_once():
    """A stateful stream: no seams where frames meet."""
    data = sine(440, 1.0, 48000)
    whole, _ = lkplug.process(data, 48000, "resample:rate=16000")
    chain = lkplug.open_chain("resample:rate=16000")
    pieces = [
        f.data
        for i in range(0, 48000, 480)
        for f in chain.push(lkplug.AudioFrame(data[i : i + 480], 48000, i))
    ]
    pieces += [f.data for f in chain.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)


def test_gain_by_db_and_by_factor():
    data = sine(440, 0.5, 48000, dbfs=-20)
    for spec, expected in (("gain:db=-6", -6.0), ("gain:factor=0.5", -6.0206), ("gain:12", 12.0)):
        out, _ = lkplug.process(data, 48000, spec)
        assert level_dbfs(out) - level_dbfs(data) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(lkplug.UsageError, match="not both"):
        lkplug.process(data, 48000, "gain:db=-6,factor=2")


def test_tone_levels():
    registry = lkplug.Registry.load([str(Path(__file__).with_name("engine_hooks.py"))])
    for spec, level in (("tone:amplitude=-6", -6 - 3.0103), ("tone:wave=noise,amplitude=-6", -6 - 4.771)):
        run = lkplug.Pipeline.from_specs(spec + ",duration=2,format=flt", [], ["collect"], registry=registry)
        asyncio.run(run.run())
        data = np.concatenate([f.data for f in run.sinks[0].obj.frames])
        assert len(data) == 96000 and level_dbfs(data) == pytest.approx(level, abs=0.1)


@pytest.mark.parametrize(
    "subtype, libsndfile", [("pcm16", "PCM_16"), ("pcm24", "PCM_24"), ("float", "FLOAT")]
)
def test_wav_subtypes(tmp_path, subtype, libsndfile):
    out = tmp_path / f"{subtype}.wav"
    result = run_lkplug(
        "run", "--source", "tone:1000,duration=0.5,amplitude=-3", "--sink", f"wav:{out},subtype={subtype}"
    )
    assert result.returncode == 0, result.stderr
    info = soundfile.info(out)
    assert (info.subtype, info.frames, info.samplerate) == (libsndfile, 24000, 48000)
    data, _ = soundfile.read(out)
    assert level_dbfs(data) == pytest.approx(-3 - 3.0103, abs=0.01)


def test_a_pipeline_writes_to_several_sinks(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    result = run_lkplug(
        "run",
        "--source",
        "tone:duration=0.3",
        "--proc",
        "resample:8000",
        "--sink",
        f"wav:{a}",
        "--sink",
        f"wav:{b},subtype=float",
    )
    assert result.returncode == 0, result.stderr
    da, _ = soundfile.read(a)
    db, _ = soundfile.read(b)
    assert len(da) == len(db) == 2400
    np.testing.assert_allclose(da, db, atol=1 / 32768)


def test_an_attenuation_runs_after_a_downmix_with_the_same_result():
    registry = lkplug.Registry.load()
    stereo = sine(440, 1.0, 48000, channels=2)
    tone = "tone:rate=48000,channels=2"
    plan = lkplug.Pipeline.from_specs(tone, ["gain:db=-6", "remix:channels=1"], [], registry).explain()
    assert plan.index("remix:channels=1") < plan.index("gain:db=-6")  # half the samples to scale
    mixed_first, _ = lkplug.process(stereo, 48000, "gain:db=-6", "remix:channels=1")
    by_hand = lkplug.process(stereo, 48000, "remix:channels=1")[0] * np.float32(10 ** (-6 / 20))
    assert np.abs(mixed_first - by_hand).max() < 1e-6
    plan = lkplug.Pipeline.from_specs(tone, ["gain:db=6", "remix:channels=1"], [], registry).explain()
    assert plan.index("gain:db=6") < plan.index("remix:channels=1")  # s16 would clip each channel first


def test_a_downmix_moves_ahead_of_every_linear_stage_before_it():
    # the batch and file benches' chain: before, the downmix passed the resampler only, and the gain
    # still scaled both channels (48 kHz stereo s16)
    registry = lkplug.Registry.load()
    chain = ["gain:db=-6", "resample:rate=16000", "remix:channels=1"]
    plan = lkplug.Pipeline.from_specs("tone:rate=48000,channels=2", chain, [], registry).explain()
    assert plan.index("remix:channels=1") < plan.index("gain:db=-6") < plan.index("resample:rate=16000")


def test_resampling_s16_gives_the_same_samples_every_time(tmp_path):
    """soxr dithers its int16 output with a seed of its own: a short s16 file resampled in s16 came
    out different on each run (a new user: three md5s for one 730-sample file, +-2 LSB over 90 % of
    it). Resampled in float and rounded, it is the same every time, and within 1 LSB of ffmpeg 5.1's
    -af aformat=flt,aresample=16000:resampler=soxr (0 LSB apart for this input, measured)."""
    noise = (np.random.default_rng(1).standard_normal((1000, 2)) * 3000).astype(np.int16)
    source = tmp_path / "n1000.wav"
    soundfile.write(source, noise, 48000, "PCM_16")
    outputs = []
    for index in range(3):
        out = tmp_path / f"d{index}.wav"
        result = run_lkplug(
            "run", "-q", "--source", f"file:{source}", "--proc", "resample:rate=16000", "--sink", f"wav:{out}"
        )
        assert result.returncode == 0, result.stderr
        outputs.append(soundfile.read(out, dtype="int16")[0])
    assert len(outputs[0]) == 333  # ffmpeg: 333 samples
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])
