"""The gate measured with lkplug.testing, through the real engine, and against a per-sample model."""

import numpy as np
import pytest

from lkplug.testing import level_dbfs, noise, run_chain, sine, to_s16

RATE = 48000


def reference_gate(samples, rate, threshold=-40.0, attack=1.0, release=50.0, hold=20.0):
    """The specification, one sample at a time: slow but obviously right."""
    amplitude = 10 ** (threshold / 20)

    def step(ms):
        return 1.0 if ms * rate / 1000 <= 1 else 1000 / (ms * rate)

    up, down, hold_samples = step(attack), step(release), round(hold * rate / 1000)
    gain, last_loud, out = 0.0, None, np.empty_like(samples)
    for i, row in enumerate(samples):
        if np.abs(row).max() >= amplitude:
            last_loud = i
        is_open = last_loud is not None and i - last_loud <= hold_samples
        gain = min(1.0, gain + up) if is_open else max(0.0, gain - down)
        out[i] = row * np.float32(gain)
    return out


def bursts(seconds=1.0):
    """Quiet noise (-60 dBFS) with 440 Hz bursts (-12 dBFS) switching every 70 ms."""
    signal = noise(seconds, RATE, dbfs=-60) + sine(440, seconds, RATE, dbfs=-12)
    on = (np.arange(len(signal)) // round(0.07 * RATE)) % 2 == 1
    signal[~on] = noise(seconds, RATE, dbfs=-60)[~on]
    return signal


def test_passes_a_loud_signal_unchanged_once_open():
    signal = sine(440, 1.0, RATE, dbfs=-20)
    out = run_chain(signal, RATE, "noisegate:threshold=-40,attack=5")
    assert np.array_equal(out[RATE // 10 :], signal[RATE // 10 :])  # after the 5 ms attack: untouched
    assert level_dbfs(out[:240]) < level_dbfs(signal[:240])  # the attack ramps it in


def test_silences_what_stays_below_the_threshold():
    out = run_chain(noise(1.0, RATE, dbfs=-60), RATE, "noisegate:threshold=-40")
    assert not out.any()


@pytest.mark.parametrize("frame_ms", [10, 7.3, 20, None])
def test_matches_the_per_sample_specification_however_frames_are_cut(frame_ms):
    signal = bursts(0.5)
    params = dict(threshold=-30.0, attack=2.0, release=15.0, hold=5.0)
    spec = "noisegate:" + ",".join(f"{k}={v}" for k, v in params.items())
    out = run_chain(signal, RATE, spec, frame_ms=frame_ms)
    np.testing.assert_allclose(out, reference_gate(signal, RATE, **params), atol=1e-6)


def test_holds_then_releases_and_keeps_s16():
    tone, hiss = sine(440, 0.2, RATE, dbfs=-12), noise(0.5, RATE, dbfs=-60)
    signal = to_s16(np.concatenate([tone, hiss]))
    out = run_chain(signal, RATE, "noisegate:threshold=-40,attack=1,hold=100,release=50", frame_ms=10)
    assert out.dtype == np.int16
    end, ms = len(tone), RATE // 1000
    assert np.array_equal(out[ms:end], signal[ms:end])  # open after the 1 ms attack
    assert np.array_equal(out[end : end + 95 * ms], signal[end : end + 95 * ms])  # held open: hiss passes
    fading = slice(end + 110 * ms, end + 140 * ms)
    assert level_dbfs(signal[fading]) - 20 < level_dbfs(out[fading]) < level_dbfs(signal[fading]) - 1
    assert not out[end + 151 * ms :].any()  # closed 100 + 50 ms after the last loud sample
