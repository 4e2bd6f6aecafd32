"""The built-in `apm` processor (LiveKit SDK's AudioProcessingModule) and the frame contract that gets it
exactly 10 ms of s16 without the user asking."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from conftest import run_lkplug

from lkplug import AudioFrame
from lkplug.testing import level_dbfs, noise, run_chain, sine, to_s16

RATE = 48000


def test_explain_shows_the_converters_the_engine_inserts_for_it():
    result = run_lkplug(
        "run", "--source", "tone:rate=48000,channels=2", "--proc", "apm", "--sink", "null", "--explain"
    )
    assert result.returncode == 0, result.stderr
    assert "audio 48000 Hz, 2 ch, s16, 20 ms frames" in result.stdout
    assert "rechunk:480  [inserted]" in result.stdout
    floats_at_44k = run_lkplug(
        "run", "--source", "tone:rate=44100,format=flt", "--proc", "apm", "--sink", "null", "--explain"
    ).stdout
    for inserted in ("resample:rate=48000  [inserted]", "format:s16  [inserted]", "rechunk:480  [inserted]"):
        assert inserted in floats_at_44k


def test_runs_on_a_48k_stereo_20ms_source_with_no_manual_rechunking(tmp_path):
    out = tmp_path / "apm.wav"
    result = run_lkplug(
        "run",
        *(
            "--source",
            "tone:freq=1000,rate=48000,channels=2,duration=1",
            "--proc",
            "apm:noise_suppression=false",
        ),
        *("--sink", f"wav:{out}"),
    )
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, dtype="int16")
    assert (rate, data.shape) == (RATE, (RATE, 2))
    assert level_dbfs(data[RATE // 2 :]) == pytest.approx(-6 - 3.01, abs=1.0)  # 1 kHz passes the high-pass


def test_high_pass_removes_hum():
    hum = sine(30, 1.0, RATE, channels=2, dbfs=-10)
    out = run_chain(hum, RATE, "apm:noise_suppression=false")
    assert level_dbfs(out[RATE // 2 :]) < level_dbfs(hum) - 40


def test_noise_suppression_lowers_steady_noise():
    hiss = noise(2.0, RATE, dbfs=-30)
    out = run_chain(hiss, RATE, "apm:high_pass=false")
    assert level_dbfs(out[RATE:]) < level_dbfs(hiss[RATE:]) - 10


def test_everything_off_is_bit_exact_at_16k_mono():
    signal = sine(440, 0.5, 16000, dbfs=-10)
    out = run_chain(signal, 16000, "apm:noise_suppression=false,high_pass=false", frame_ms=7)
    assert out.dtype == np.int16 and np.array_equal(out[: len(signal)], to_s16(signal))


def test_echo_cancellation_with_a_far_end_stream():
    """An application feeds what its loudspeaker plays to reverse(); the echo in the microphone goes."""
    from lkplug_livekit.apm import Apm

    apm = Apm(noise_suppression=False, high_pass=False, echo_cancellation=True)
    far = to_s16(noise(2.0, RATE, dbfs=-20, seed=1))
    mic = np.zeros_like(far)
    mic[480:] = far[:-480] // 2  # the loudspeaker heard 10 ms later, 6 dB down
    out = []
    for start in range(0, len(far), 480):
        apm.reverse(AudioFrame(far[start : start + 480], RATE, start))
        out += apm.process(AudioFrame(mic[start : start + 480], RATE, start))
    cleaned = np.concatenate([frame.data for frame in out])
    assert level_dbfs(cleaned[RATE:]) < level_dbfs(mic[RATE:]) - 30
