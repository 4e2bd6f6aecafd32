"""The frame contract the engine keeps (issue 16): sinks get only the kinds they accept, fixed-size
stages get exact frames, lengths are kept, flush() means end of stream, what a stage hands on is
checked, plugin failures are the plugin's, signals always work, numbers are finite."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug, wait_for_bytes

import lkplug
from lkplug import AudioFormat, Built, Pipeline, Registry, UsageError
from lkplug.testing import sine, to_s16

HERE = Path(__file__).resolve().parent
HOOKS = str(HERE / "contract_hooks.py")
ENGINE_HOOKS = str(HERE / "engine_hooks.py")


@pytest.fixture(scope="module")
def registry():
    return Registry.load([HOOKS, ENGINE_HOOKS])


def make_mp4(path, seconds=0.5, width=160, height=120, fps=30, rate=48000):
    """H.264 + AAC made with PyAV alone; the audio is a -6 dBFS sine (peak 0.5)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        picture = np.full((height, width, 3), 215, np.uint8)  # bright: a pixel read as audio shows
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            container.mux(video.encode(frame))
        samples = to_s16(sine(440, seconds, rate, 2))
        for start in range(0, len(samples), 1024):
            chunk = np.ascontiguousarray(samples[start : start + 1024].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def wav_frames(path) -> int:
    return soundfile.info(str(path)).frames  # libsndfile reads the header: valid or an error


# 1. sinks get what they accept --------------------------------------------------------------------


def test_an_audio_only_sink_beside_a_video_sink_gets_only_audio(tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_mp4(clip)
    result = run_lkplug(
        "run", "-p", HOOKS, "--source", f"file:{clip}", "--sink", "peaks", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    # before: start() got audio and video, and the "peak" was 215, a pixel value
    assert "peaks: start ['audio']" in result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("peaks: max"))
    peak, kinds = float(line.split()[2]), line.split()[4]
    assert kinds == "audio"
    assert abs(peak - 0.5) < 0.05  # the sine's peak (AAC moves it a little), not a pixel
    with av.open(str(out)) as container:
        assert len(container.streams.video) == 1  # the file sink still got the video


def test_a_sink_that_takes_none_of_the_sources_kinds_is_a_usage_error(tmp_path):
    clip = tmp_path / "in.mp4"
    make_mp4(clip)
    out = tmp_path / "a.wav"
    result = run_lkplug("run", "--source", f"file:{clip},stream=v:0", "--sink", f"wav:{out}")
    line = assert_one_line_error(result)
    assert result.returncode == 2
    assert "wav:" in line and "takes none of" in line and "video" in line
    assert not out.exists()


# 2 and 4. exact frames, exact lengths --------------------------------------------------------------


@pytest.mark.parametrize(
    "source, extra",
    [("tone:duration=1.005,frame_ms=10", []), ("tone:duration=0,frame_ms=10", ["-t", "1.005"])],
)
def test_apm_after_a_short_last_frame_keeps_every_sample(tmp_path, source, extra):
    # before: a Rust panic inside the LiveKit SDK, exit 134, a WAV whose header said 0 frames
    out = tmp_path / "a.wav"
    result = run_lkplug("run", "--source", source, "--proc", "apm", "--sink", f"wav:{out}", *extra)
    assert result.returncode == 0, result.stderr
    assert wav_frames(out) == 48240  # 1.005 s at 48 kHz


def test_padding_added_for_a_fixed_size_stage_is_removed_again(tmp_path, registry):
    out = tmp_path / "a.wav"
    result = run_lkplug("run", "--source", "tone:duration=1.003", "--proc", "apm", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    assert wav_frames(out) == 48144  # before: 48480 (1.01 s)
    run = Pipeline.from_specs("tone:duration=1.03", ["fixed:ms=100"], ["collect"], registry=registry)
    asyncio.run(run.run())
    assert sum(f.samples for f in run.sinks[0].obj.frames) == 49440  # before: 52800 (1.1 s)


def test_a_stage_after_one_that_changes_frame_lengths_still_gets_exact_frames(registry):
    run = Pipeline.from_specs(
        "tone:duration=1,frame_ms=10", ["regroup", "fixed:ms=10"], ["collect"], registry=registry
    )
    asyncio.run(run.run())  # before: Fixed raised "got 320 samples, not 10.0 ms"
    sizes = run.processors[1].obj.sizes
    assert {size for size, _ in sizes} == {480} and len(sizes) == 100
    assert sum(f.samples for f in run.sinks[0].obj.frames) == 48000


# 3. flush() means end of stream ------------------------------------------------------------------


def test_the_guides_delay_across_a_format_change_starts_the_new_stream_fresh(registry):
    run = Pipeline.from_specs("switch", ["delay:ms=50"], ["collect"], registry=registry)
    asyncio.run(run.run())
    frames = run.sinks[0].obj.frames
    old = np.concatenate([f.data for f in frames if f.sample_rate == 48000])
    new = np.concatenate([f.data for f in frames if f.sample_rate == 16000])
    assert len(old) == 9600 + 2400  # 0.2 s at 48 kHz and its 50 ms delay
    # before: 5600, the first 2400 being the old stream's held audio
    assert len(new) == 3200 + 800  # 0.2 s at 16 kHz and its 50 ms delay at 16 kHz
    assert not new[:800].any() and (new[800:] == 0.25).all()  # silence, then the new stream


# 10. what a stage hands on is checked; 11. a plugin cannot end the run as a success -----------------


@pytest.mark.parametrize(
    "how, expected",
    [
        ("none", "returned None"),
        ("wrongrate", "44100 Hz"),
        ("notaframe", "'not a frame'"),
        ("exit", "SystemExit"),
        ("exitmsg", "faulty gave up"),
        ("interrupt", "KeyboardInterrupt"),
    ],
)
def test_a_faulty_stage_is_named_and_what_came_before_is_kept_aside(tmp_path, how, expected):
    out = tmp_path / "a.wav"
    result = run_lkplug(
        "run", "-p", HOOKS, "--source", "tone:duration=10", "--proc", f"faulty:{how}", "--sink", f"wav:{out}"
    )
    line = assert_one_line_error(result)
    assert result.returncode == 1  # never 0 (a success) nor 130 (a user's Ctrl-C)
    assert f"faulty:{how}" in line and "contract_hooks (-p)" in line and expected in line, line
    assert "wav:" not in line.split("faulty")[0]  # not blamed on the sink
    # a failed run leaves nothing under the final name (--skip-existing would take it as done: issue
    # 13); what was written is kept in its temporary, which the line names
    assert not out.exists()
    (part,) = tmp_path.glob(".a.wav.*.part")
    assert line.endswith(f"; what was written is kept in {part}"), line
    assert wav_frames(part) == 48000  # the 50 frames of 20 ms that passed before the fault


def test_a_wav_written_before_a_native_abort_is_still_valid(tmp_path):
    out = tmp_path / "a.wav"
    result = run_lkplug(
        "run", "-p", HOOKS, "--source", "tone:duration=10", "--proc", "faulty:abort", "--sink", f"wav:{out}"
    )
    assert result.returncode == -signal.SIGABRT  # nothing can catch an abort
    # an aborted run is a killed one: nothing under the final name (--skip-existing would take it as
    # done); what it wrote is in its temporary, whose header is valid (before: it said 0 frames)
    assert not out.exists()
    (part,) = tmp_path.glob(".a.wav.*.part")
    assert wav_frames(part) == 48000


# 12. signals always work -------------------------------------------------------------------------


def start_run(tmp_path, *args):
    out = tmp_path / "a.wav"
    process = subprocess.Popen(
        [sys.executable, "-m", "lkplug", "run", "-p", HOOKS, *args, "--sink", f"wav:{out}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, out


def wait_for_line(process, text):
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never came: {''.join(lines)}")


@pytest.mark.parametrize(
    "stage, first, second",
    [
        ("faulty:block", signal.SIGINT, signal.SIGINT),
        ("faulty:block", signal.SIGTERM, signal.SIGTERM),
        ("asyncblock", signal.SIGINT, signal.SIGINT),
        ("asyncblock", signal.SIGTERM, signal.SIGTERM),
        # one is enough when the stage keeps the event loop from taking it (after ESCALATE_SECONDS)
        ("faulty:block", signal.SIGTERM, None),
    ],
)
def test_a_second_signal_ends_a_blocked_stage_and_leaves_a_valid_file(tmp_path, stage, first, second):
    process, out = start_run(tmp_path, "--source", "tone:duration=10", "--proc", stage)
    wait_for_line(process, "blocking")
    process.send_signal(first)
    time.sleep(0.3)
    if second is not None:
        process.send_signal(second)
    _, stderr = process.communicate(timeout=20)  # before: only SIGKILL ended it
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stage.split(":")[0] in stderr  # names what it was waiting for
    assert wav_frames(out) == 48000  # the header was finalised: 50 frames of 20 ms


def test_a_second_ctrl_c_during_a_blocked_stage_writes_the_mp4_trailer(tmp_path):
    out = tmp_path / "a.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "lkplug", "run", "-p", HOOKS, "--source", "tone:duration=10"]
        + ["--proc", "faulty:block", "--sink", f"file:{out}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_line(process, "blocking")
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    with av.open(str(out)) as container:  # opens: the moov atom (the trailer) was written
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples - 48000) <= 1024  # the 50 frames of 20 ms before the block, give or take AAC's frame


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_the_encoder_drains_its_backlog_leaves_a_valid_mp4(tmp_path, second):
    """x264 holds about 40 pictures (its lookahead); draining them at 1280x720 takes seconds (2.4 s
    measured, unloaded). The second signal drops them: the trailer is written, the file renamed, exit
    130. Before: the process ended while closing, leaving only a 48-byte .part and no output."""
    clip = tmp_path / "clip.mp4"
    # 10 s, 1280x720, 30 fps: what a camera recording is (FFmpeg's testsrc2 through PyAV's lavfi)
    with (
        av.open("testsrc2=size=1280x720:rate=30:duration=10", format="lavfi") as pattern,
        av.open(str(clip), "w") as container,
    ):
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for frame in pattern.decode(video=0):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out = tmp_path / "rec.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "lkplug", "run", "--source", f"file:{clip}", "--sink", f"file:{out}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_bytes(out, 64 * 1024 - 1)  # packets out: lookahead full
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(second)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not list(tmp_path.glob(".rec.mp4.*.part")), stderr
    with av.open(str(out)) as container:  # opens: the moov atom (the trailer) was written
        pictures = sum(1 for _ in container.decode(video=0))
    assert pictures > 0


def test_sigterm_ends_a_run_waiting_on_its_pace(tmp_path):
    process, out = start_run(tmp_path, "--pace", "1e-6", "--source", "tone:duration=10")
    wait_for_bytes(out, 0, seconds=30)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)  # before: any number of SIGTERMs were ignored
    assert process.returncode == 130, stderr
    assert wav_frames(out) == 960  # the first 20 ms frame is due at once; the next in 5.5 hours


# 13. numbers are finite ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--source", "tone", "--proc", "gain:db=nan"],
        ["--source", "tone:freq=nan"],
        ["--source", "tone:freq=inf"],
        ["--source", "tone:duration=1e308"],
        ["--source", "tone", "-t", "nan"],
        ["--source", "tone", "-t", "inf"],
        ["--source", "tone", "-t", "1e308"],
    ],
)
def test_nan_and_infinities_are_usage_errors(tmp_path, args):
    result = run_lkplug("run", *args, "--sink", f"wav:{tmp_path / 'a.wav'}")
    assert result.returncode == 2, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "a.wav").exists()


# 5-9 ----------------------------------------------------------------------------------------------


def test_dash_p_no_takes_the_plugin_or_the_distribution_name_and_refuses_unknown_names():
    listed = run_lkplug("list")
    assert listed.returncode == 0
    assert any(line.split()[:3] == ["audio", "tone", "source"] for line in listed.stdout.splitlines())
    by_dist = run_lkplug("list", "-p", "no:lkplug")  # the built-ins' distribution
    assert by_dist.returncode == 0 and "tone" not in by_dist.stdout.split()
    typo = run_lkplug("list", "-p", "no:audoi")
    line = assert_one_line_error(typo)
    assert typo.returncode == 2 and "did you mean 'audio'?" in line


def test_components_in_the_documented_shape_without_base_classes_run(tmp_path):
    # before: unexpected AttributeError: 'Duck' object has no attribute 'bind'
    result = run_lkplug(
        "run", "-p", HOOKS, "--source", "tone:duration=0.1", "--proc", "duck", "--sink", "ducksink"
    )
    assert result.returncode == 0, result.stderr
    wrong = run_lkplug("run", "-p", HOOKS, "--source", "tone:duration=0.1", "--sink", "notasink")
    line = assert_one_line_error(wrong)
    assert "notasink (from contract_hooks (-p)) is not a sink: it has no write()" in line


def test_new_plugin_refuses_a_name_already_provided(tmp_path):
    result = run_lkplug("new-plugin", "gain", "--dir", str(tmp_path / "p"))
    line = assert_one_line_error(result)
    assert result.returncode == 2 and "gain" in line and "lkplug" in line
    assert not (tmp_path / "p").exists()


def test_process_takes_float64_int32_and_mono_and_refuses_channels_first():
    stereo = sine(440, 1.0, 48000, channels=2).astype(np.float64)  # what soundfile.read gives
    out, rate = lkplug.process(stereo, 48000, "gain:db=-6")
    assert out.shape == (48000, 2) and rate == 48000 and out.dtype == np.float64
    assert np.allclose(out, stereo / 10 ** (6 / 20), atol=1e-6)
    ints = (sine(440, 0.1)[:, 0] * 2**31).astype(np.int32)  # 1-D: mono
    out, _ = lkplug.process(ints, 48000, "gain:db=-6")
    assert out.shape == (4800, 1) and out.dtype == np.int32
    assert abs(int(np.abs(out).max()) - int(np.abs(ints).max()) / 10 ** (6 / 20)) < 2**8  # float32 precision
    with pytest.raises(UsageError, match=r"\(samples, channels\).*\(2, 48000\)"):
        lkplug.process(stereo.T, 48000, "gain:db=-6")
    chain = lkplug.open_chain("gain:db=-6")
    frames = chain.push(stereo[:960], 48000) + chain.push(stereo[960:1920], 48000) + chain.flush()
    assert [f.timestamp for f in frames] == [0, 960] and frames[0].data.dtype == np.float32
    with pytest.raises(UsageError, match=r"got shape \(2, 960\); channels first\? pass samples.T"):
        chain.push(stereo[:960].T, 48000)


@pytest.mark.parametrize("rate", [0, -48000, 48000.5, 48000.0, "48000", True])
def test_process_and_push_refuse_a_rate_that_is_no_whole_number_above_0(rate):
    # before: accepted, and lkplug.process(x, 0, "gain:db=-6") returned rate 0 (-48000, 48000.5 alike)
    samples = np.zeros((480, 1), np.int16)
    with pytest.raises(ValueError, match=r"process: rate must be a whole number .* above 0"):
        lkplug.process(samples, rate, "gain:db=-6")
    with pytest.raises(ValueError, match=r"push: rate must be a whole number .* above 0"):
        lkplug.open_chain("gain:db=-6").push(samples, rate)
    with pytest.raises(ValueError, match=r"process: frame_size must be a whole number"):
        lkplug.process(samples, 48000, "gain:db=-6", frame_size=0)
    assert lkplug.process(samples, np.int64(48000), "gain:db=-6")[1] == 48000  # numpy integers are whole


def test_clipping_is_reported_once_naming_the_stage(tmp_path):
    out = tmp_path / "a.wav"
    result = run_lkplug(
        "run", "--source", "tone:amplitude=-24,duration=1", "--proc", "gain:db=60", "--sink", f"wav:{out}"
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "clipped" in line]
    assert len(warnings) == 1 and "gain:db=60" in warnings[0], result.stderr


def test_sinks_in_process_see_only_accepted_kinds_and_formats(registry):
    sink = Built("peaks", registry.get("sink", "peaks").component.factory())
    run = Pipeline(
        Built("withdata", registry.get("source", "withdata").component.factory()), [], [sink], registry
    )
    asyncio.run(run.run())
    assert sink.obj.kinds == {"audio"} and set(sink.obj.started) == {"audio"}
    assert sink.obj.started["audio"] == AudioFormat(48000, 1, "flt")  # converted from s16 for it
