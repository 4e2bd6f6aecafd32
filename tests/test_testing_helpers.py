"""lkplug.testing: the signals, measurements and run_chain that plugin authors test with."""

from __future__ import annotations

import numpy as np
import pytest

from lkplug.testing import (
    delay,
    dominant_frequency,
    impulse,
    level_dbfs,
    noise,
    peak_dbfs,
    run_chain,
    sine,
    to_s16,
)


def test_signals_have_the_levels_asked_for():
    assert peak_dbfs(sine(1000, 1.0, 48000, dbfs=-6)) == pytest.approx(-6, abs=0.01)
    assert level_dbfs(sine(1000, 1.0, 48000, dbfs=-6)) == pytest.approx(-9.01, abs=0.01)
    assert level_dbfs(noise(1.0, 48000, dbfs=-20)) == pytest.approx(-20, abs=0.1)
    assert peak_dbfs(impulse(0.1, 48000, at=0.05, dbfs=-3)) == pytest.approx(-3, abs=0.01)
    assert sine(440, 0.5, 16000, channels=2).shape == (8000, 2)
    assert level_dbfs(np.zeros((10, 1), np.float32)) < -200


def test_measurements_read_int16_as_full_scale_too():
    signal = sine(997, 1.0, 48000, dbfs=-10)
    assert level_dbfs(to_s16(signal)) == pytest.approx(level_dbfs(signal), abs=0.01)
    assert dominant_frequency(to_s16(signal), 48000) == pytest.approx(997, abs=2)


def test_delay_by_cross_correlation():
    reference = noise(0.5, 48000)
    late = np.concatenate([np.zeros((123, 1), np.float32), reference])[: len(reference)]
    assert delay(reference, late) == 123
    assert delay(late, reference) == -123
    assert delay(impulse(0.1, 48000, at=0.01), impulse(0.1, 48000, at=0.03)) == 960


def test_run_chain_uses_the_engine_and_its_converters():
    signal = sine(440, 1.0, 48000, channels=2, dbfs=-10)
    out = run_chain(signal, 48000, "gain:db=-6", "remix:channels=1")
    assert out.shape == (48000, 1)
    # ffmpeg -ac 1 on float stereo mixes 0.7071 * (L + R): equal channels come out 3.01 dB louder
    assert level_dbfs(out) - level_dbfs(signal) == pytest.approx(-6 + 3.01, abs=0.01)
    resampled = run_chain(signal, 48000, "resample:rate=16000")
    assert abs(len(resampled) - 16000) <= 1 and dominant_frequency(resampled, 16000) == pytest.approx(
        440, abs=2
    )


def test_run_chain_in_frames_or_whole():
    signal = to_s16(sine(300, 0.25, 48000))
    framed = run_chain(signal, 48000, "gain:factor=0.5", frame_ms=10)
    whole = run_chain(signal, 48000, "gain:factor=0.5", frame_ms=None)
    assert framed.dtype == np.float32 and np.array_equal(framed, whole)  # gain hands on float, as volume
