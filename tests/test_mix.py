"""Fan-in of files: several ``--source`` options through ``--proc mix`` into one output, converted
by the planner's converters and aligned at their start times (``offset=`` shifts one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug

from lkplug import Registry, UsageError
from lkplug.testing import dominant_frequency, level_dbfs, sine, to_s16

A_RATE, B_RATE, RATE = 44100, 16000, 48000
HOOKS = Path(__file__).parent / "mix_hooks.py"


@pytest.fixture
def inputs(tmp_path):
    """a.wav: 3 s of 440 Hz at -6 dBFS peak, 44.1 kHz stereo; b.wav: 2 s at 16 kHz mono, a click on
    its first sample then 660 Hz from 0.5 s (the click marks where b starts on the timeline)."""
    a = tmp_path / "a.wav"
    soundfile.write(a, to_s16(sine(440, 3.0, A_RATE, channels=2)), A_RATE)
    b_signal = np.zeros((2 * B_RATE, 1), np.float32)
    b_signal[0] = 0.9
    b_signal[B_RATE // 2 :] = sine(660, 1.5, B_RATE)
    b = tmp_path / "b.wav"
    soundfile.write(b, to_s16(b_signal), B_RATE)
    return a, b


def mix(tmp_path, a, b, layout: str, subtype: str = "float") -> tuple[np.ndarray, int]:
    out = tmp_path / f"{layout.replace(':', '-').replace(',', '-')}.wav"
    result = run_lkplug(
        "run",
        "--source",
        f"file:{a}",
        "--source",
        f"file:{b},offset=1.5",
        "--proc",
        layout,
        "--sink",
        f"wav:{out},subtype={subtype}",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    return soundfile.read(out, always_2d=True, dtype="float32")


def test_two_files_of_other_rates_and_channels_stacked_with_an_offset(tmp_path, inputs):
    data, rate = mix(tmp_path, *inputs, "mix:channels")
    # ffmpeg -i a.wav -i b.wav -filter_complex "[1]adelay=1500:all=1[b];[0][b]amerge" gives the same
    # 3.5 s: the longer of a (3 s) and b (2 s from 1.5 s); at 48 kHz that is 168000 samples
    assert (rate, data.shape) == (RATE, (168000, 2))
    a, b = data[:, 0], data[:, 1]
    # b's click, resampled by soxr (linear phase), peaks where b starts: 1.5 s = sample 72000
    assert abs(int(np.argmax(np.abs(b[: 2 * RATE]))) - 72000) <= 1
    assert np.abs(b[: 72000 - 100]).max() < 1e-3  # silence before b starts
    assert dominant_frequency(b[int(2.1 * RATE) : int(3.4 * RATE)], RATE) == pytest.approx(660, abs=2)
    # a's stereo is folded to mono by libswresample as `ffmpeg -i a.wav -ac 1 -c:a pcm_f32le` folds
    # it for a float WAV: unscaled (0.707 each, two equal channels 3 dB up), -6.00 dBFS RMS as
    # ffmpeg's output measures (before: -9.03, the s16 output's scaling, for a float output)
    assert level_dbfs(a[RATE // 10 : int(2.9 * RATE)]) == pytest.approx(-6.0, abs=0.05)
    assert dominant_frequency(a[: 3 * RATE], RATE) == pytest.approx(440, abs=2)
    assert np.abs(a[3 * RATE + 100 :]).max() < 1e-3  # a ended at 3 s


def test_sum_adds_the_streams_with_the_documented_headroom(tmp_path, inputs):
    data, rate = mix(tmp_path, *inputs, "mix:sum")
    assert (rate, data.shape) == (RATE, (168000, 1))
    # before b: a alone, 6 dB (the default headroom) below a's fold for a float WAV (-6.00 dBFS above)
    assert level_dbfs(data[RATE // 10 : int(1.4 * RATE), 0]) == pytest.approx(-6.0 - 6.0, abs=0.05)
    both = data[int(2.1 * RATE) : int(2.9 * RATE), 0]
    spectrum = np.abs(np.fft.rfft(both[:, None].T[0]))
    freqs = np.fft.rfftfreq(len(both), 1 / RATE)
    assert {round(freqs[i]) for i in np.argsort(spectrum)[-2:]} == {440, 660}


def test_a_streams_downmix_is_scaled_when_the_mix_is_kept_as_s16(tmp_path, inputs):
    # the mix only places and adds: a stream's fold is scaled by what the mix is written as, as
    # `ffmpeg -i a.wav -ac 1 -c:a pcm_s16le` scales (0.5 each): -9.01 dBFS RMS in ffmpeg 5.1's output
    a, b = inputs
    data, _ = mix(tmp_path, a, b, "mix:channels", subtype="pcm16")
    assert level_dbfs(data[RATE // 10 : int(2.9 * RATE), 0]) == pytest.approx(-9.01, abs=0.05)
    data, _ = mix(tmp_path, a, b, "mix:sum", subtype="pcm16")  # and the headroom below that
    assert level_dbfs(data[RATE // 10 : int(1.4 * RATE), 0]) == pytest.approx(-9.01 - 6.0, abs=0.05)
    # a float a.wav the same (before: 3 dB up, -6.00, the fold left unscaled for float frames)
    soundfile.write(a, soundfile.read(a, dtype="float32")[0], A_RATE, subtype="FLOAT")
    data, _ = mix(tmp_path, a, b, "mix:channels", subtype="pcm16")
    assert level_dbfs(data[RATE // 10 : int(2.9 * RATE), 0]) == pytest.approx(-9.01, abs=0.05)


def test_split_puts_the_left_glob_left(tmp_path, inputs):
    data, _ = mix(tmp_path, *inputs, "mix:split,left=b*")
    assert data.shape == (168000, 2)
    left, right = data[:, 0], data[:, 1]
    assert dominant_frequency(left[int(2.1 * RATE) : int(3.4 * RATE)], RATE) == pytest.approx(660, abs=2)
    assert dominant_frequency(right[: int(1.4 * RATE)], RATE) == pytest.approx(440, abs=2)
    assert np.abs(left[: 72000 - 100]).max() < 1e-3


def test_order_picks_the_channels(tmp_path, inputs):
    data, _ = mix(tmp_path, *inputs, "mix:channels,order='b,a'")
    assert dominant_frequency(data[: int(1.4 * RATE), 1], RATE) == pytest.approx(440, abs=2)
    assert np.abs(data[: 72000 - 100, 0]).max() < 1e-3


def test_a_glob_source_stands_for_every_file_it_matches(tmp_path, inputs):
    out = tmp_path / "glob.wav"
    result = run_lkplug(
        "run", "--source", f"file:{tmp_path}/[ab].wav", "--proc", "mix:channels", "--sink", f"wav:{out}"
    )
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, always_2d=True)
    assert (rate, data.shape) == (RATE, (3 * RATE, 2))  # both start at 0: the longer, a, is 3 s


def test_mistakes_are_one_line(tmp_path, inputs):
    a, b = inputs
    out = f"wav:{tmp_path}/x.wav"
    line = assert_one_line_error(
        run_lkplug("run", "--source", f"file:{a}", "--source", f"file:{b}", "--sink", out)
    )
    assert "--proc mix" in line
    line = assert_one_line_error(
        run_lkplug("run", "--source", f"file:{a}", "--proc", "gain", "--proc", "mix", "--sink", out)
    )
    assert "first --proc" in line
    line = assert_one_line_error(
        run_lkplug("run", "--source", f"file:{a}", "--proc", "mix:split", "--sink", out)
    )
    assert "left=" in line


def test_layouts_assign_channels():
    registry = Registry.load()
    make = registry.get("processor", "mix").component.factory
    ordered = make("channels", order="alice,bob,*", count=4)
    assert [ordered.assign(n) for n in ("carol", "bob", "dave", "alice", "erin")] == [2, 1, 3, 0, None]
    split = make("split", left="agent-*")
    assert [split.assign(n) for n in ("caller", "agent-7")] == [1, 0]
    assert make("channels", order="alice,bob").channels == 2
    with pytest.raises(UsageError, match="count="):
        make("channels").output_format()
    summed = make("sum").mix([(0, np.ones(4, np.float32)), (0, np.ones(4, np.float32))], 4)
    assert summed[:, 0] == pytest.approx(1.0)  # headroom 6.0206 dB: a half


def mix_room(tmp_path, source: str, proc: str):
    """6 s of tests/mix_hooks.py's ``room`` source through ``proc`` into a float WAV: the run and the
    samples, (samples, channels), after checking the run succeeded at 48 kHz and 6 s."""
    out = tmp_path / "room.wav"
    args = ("-p", str(HOOKS), "--source", source, "--proc", proc, "--sink", f"wav:{out},subtype=float")
    result = run_lkplug("run", *args, "-t", "6")
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, always_2d=True, dtype="float32")
    assert (rate, len(data)) == (RATE, 6 * RATE)
    return result, data


@pytest.mark.parametrize("layout", ["mix", "mix:channels,order='alice,bob'", "mix:split,left=alice"])
def test_live_streams_are_placed_by_when_they_come(tmp_path, layout):
    """A room without a network (tests/mix_hooks.py): alice from the start, bob from 2 s to 4 s."""
    result, data = mix_room(tmp_path, "room", layout)
    gain = 1.0 if "channels" in layout else 10 ** (-6 / 20)
    alice, bob = data[:, 0], data[:, -1]
    blocks = alice.reshape(-1, RATE // 100)
    # alice throughout, at her level (0.5 peak) less the headroom, in every 10 ms block
    assert np.sqrt(np.mean(blocks**2, axis=1)).min() == pytest.approx(0.5 * gain / np.sqrt(2), rel=0.15)
    # where bob sounds: the 660 Hz amplitude in 50 ms windows (whole cycles of 440 and 660 Hz, so
    # alice does not leak in) every 5 ms is above half of his: from 2 s to 4 s, within 60 ms
    window, step = RATE // 20, RATE // 200
    phase = np.exp(-2j * np.pi * 660 * np.arange(window) / RATE)
    starts = np.arange(0, len(bob) - window, step)
    amplitude = np.array([2 * abs(np.dot(bob[s : s + window], phase)) / window for s in starts])
    sounding = (starts[amplitude > 0.25 * gain] + window / 2) / RATE
    assert sounding[0] == pytest.approx(2.0, abs=0.06), sounding[0]
    assert sounding[-1] == pytest.approx(4.0, abs=0.06), sounding[-1]
    assert np.ptp(np.diff(sounding)) < 1e-9  # one stretch, no hole


def test_a_stalled_process_does_not_leave_holes_in_the_live_mix(tmp_path):
    """lkplug itself stopped for 0.6 s at 3 s (tests/mix_hooks.py's stall=): every stream's frames come
    late alike, all at once after it. The mix waits for them rather than writing their places as
    silence and moving the streams later."""
    result, data = mix_room(tmp_path, "room:alice:440:0:60+bob:660:2:5,stall=3", "mix:channels,count=2")
    assert "later than its timestamps" not in result.stderr and "too late" not in result.stderr, result.stderr
    # alice in every 10 ms block, bob in every block from 2 s to 5 s but the edges', at the level sent
    alice = np.sqrt(np.mean(data[:, 0].reshape(-1, RATE // 100) ** 2, axis=1))
    bob = np.sqrt(np.mean(data[2 * RATE + 480 : 5 * RATE - 480, 1].reshape(-1, RATE // 100) ** 2, axis=1))
    assert alice.min() == pytest.approx(0.5 / np.sqrt(2), rel=0.15), np.flatnonzero(alice < 0.3) / 100
    assert bob.min() == pytest.approx(0.5 / np.sqrt(2), rel=0.15), np.flatnonzero(bob < 0.3) / 100 + 2


def test_what_the_receiver_made_up_is_said_without_zero_amounts():
    from lkplug_livekit.concealment import describe

    # (start, end, concealed ms, stretched ms) on the stream's own timeline, shifted by where it was placed
    assert (
        describe([(1.0, 1.5, 0.0, 20.0)], offset=0.4)
        == "the receiver stretched 20 ms of audio at 1.40-1.90 s"
    )
    assert describe([(1.0, 1.5, 65.2, 0.0), (1.2, 2.0, 0.0, 0.3)]) == (
        "the receiver concealed 65 ms and stretched 1 ms of audio at 1.00-2.00 s"
    )


@pytest.mark.parametrize("stereo", [False, True])
def test_two_speakers_at_full_scale_do_not_clip_a_sum_kept_as_s16(tmp_path, stereo):
    # the headroom claim (README, `lkplug inspect mix`): two streams at full scale, in phase, summed
    # and lowered by the default headroom, do not clip; a stereo stream's fold into an s16 output is
    # scaled (0.5 each, as ffmpeg -ac 1 into s16), so it holds for stereo streams too. Before, the
    # default was 6.00 dB, a factor 0.5012: 4800 of 4800 samples clipped (+0.02 dBFS), and a float
    # stereo stream was folded unscaled, 1.414 each
    full = np.float32(32767 / 32768)
    signal = np.full((RATE // 10, 2 if stereo else 1), full, np.float32)
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path in paths:
        soundfile.write(path, signal, RATE, subtype="FLOAT")
    out = tmp_path / "sum.wav"
    result = run_lkplug(
        "run",
        "--source",
        f"file:{paths[0]}",
        "--source",
        f"file:{paths[1]}",
        "--proc",
        "mix",
        "--sink",
        f"wav:{out}",
    )
    assert result.returncode == 0, result.stderr
    assert "clipped" not in result.stderr
    data = soundfile.read(out, dtype="int16", always_2d=True)[0]
    assert int(data.max()) >= 32600  # within 0.02 dB of full scale


@pytest.mark.parametrize("field", ["{stem}", "{identity}", "{stem.upper}"])
def test_a_mix_refuses_a_field_that_nothing_fills(tmp_path, inputs, field):
    # before: `--proc mix --sink 'wav:k3/{stem}.wav'` wrote a file literally named "{stem}.wav", exit 0;
    # a mix writes one output for all its inputs, so no input's name can fill it
    result = run_lkplug(
        "run", "--source", f"file:{tmp_path}/[ab].wav", "--proc", "mix:channels",
        "--sink", f"wav:{tmp_path}/k3/{field}.wav",
    )  # fmt: skip
    line = assert_one_line_error(result)
    assert result.returncode == 2
    assert f"nothing fills {field} here" in line
    assert not (tmp_path / "k3").exists()


def test_a_doubled_brace_is_a_brace_in_a_mix_as_in_a_batch(tmp_path, inputs):
    result = run_lkplug(
        "run", "--source", f"file:{tmp_path}/[ab].wav", "--proc", "mix:channels",
        "--sink", f"wav:{tmp_path}/{{{{x}}}}.wav",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "{x}.wav").exists()
