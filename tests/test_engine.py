"""The engine: converters from contracts, flushing, stopping, errors, kinds, async stages."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

import lkplug
from lkplug import NegotiationError, Pipeline, PluginError, Registry
from lkplug.testing import dominant_frequency, level_dbfs, sine, to_s16

HOOKS = str(Path(__file__).with_name("engine_hooks.py"))


@pytest.fixture(scope="module")
def registry():
    return Registry.load([HOOKS])


def pipeline(registry, source, procs=(), sinks=("collect",), **options):
    return Pipeline.from_specs(source, procs, sinks, registry=registry, **options)


async def test_converters_are_inserted_for_a_16k_mono_processor_after_48k_stereo(registry):
    run = pipeline(registry, "tone:rate=48000,channels=2,duration=1", ["probe16k"])
    plan = run.explain()
    # downmix first (less to resample), then soxr; the downmix is kept as the stage's float, so it
    # mixes s16 into flt (as ffmpeg's one aresample from s16 stereo to a filter's flt mono does)
    # and no format:flt is needed after it
    assert plan.index("remix:channels=mono  [inserted]") < plan.index("resample:rate=16000  [inserted]")
    assert plan.index("resample:rate=16000  [inserted]") < plan.index("probe16k")
    assert "format:" not in plan
    await run.run()
    assert set(run.processors[0].obj.seen) == {lkplug.AudioFormat(16000, 1, "flt")}
    collected = run.sinks[0].obj.frames
    assert sum(f.samples for f in collected) == 16000  # the resampler's tail was flushed


async def test_real_time_pace_goes_on_after_a_stalled_sink_instead_of_bursting(registry):
    run = pipeline(registry, "tone:duration=1,frame_ms=100", sinks=["stall:seconds=0.5"], pace=1.0)
    await run.run()
    times = run.sinks[0].obj.times
    assert len(times) == 10
    # the nine frames after the stall keep their 100 ms spacing (a catch-up burst would take ~0)
    assert times[-1] - times[0] > 0.7


async def test_a_resampler_tail_reaches_the_sink(registry, tmp_path):
    out = tmp_path / "r.wav"
    run = pipeline(registry, "tone:duration=1,rate=44100", ["resample:rate=16000"], [f"wav:{out}"])
    await run.run()
    info = soundfile.info(out)
    assert info.samplerate == 16000 and info.frames == 16000


async def test_fixed_frame_contract_gets_exact_frames_and_a_padded_tail(registry):
    run = pipeline(registry, "tone:duration=0.1,frame_ms=7", ["needs10ms"])
    assert "rechunk:480  [inserted]" in run.explain()
    await run.run()
    sizes = run.processors[0].obj.sizes
    assert set(sizes) == {480} and len(sizes) == 10  # 4800 samples, exact
    run = pipeline(registry, "tone:duration=0.105,frame_ms=7", ["needs10ms"])
    await run.run()
    assert run.processors[0].obj.sizes == [480] * 11  # 5040 samples: the last 240 are padded


async def test_without_a_rate_converter_negotiation_fails_naming_the_stage():
    registry = Registry.load(["no:audio", HOOKS])
    run = Pipeline.from_specs("ratechange", ["probe16k"], ["collect"], registry=registry)
    with pytest.raises(NegotiationError, match=r"probe16k needs 16000 Hz .* no loaded plugin converts rate"):
        await run.run()
    assert run.sinks[0].obj.closed  # sinks are closed on every exit path


async def test_a_format_change_mid_stream_replans_the_converters(registry):
    run = pipeline(registry, "ratechange", ["wants48k"])
    await run.run()
    frames = run.sinks[0].obj.frames
    assert {f.sample_rate for f in frames} == {48000}
    assert abs(sum(f.samples for f in frames) - 96000) <= 48  # 1 s native + 1 s resampled up


async def test_stop_ends_the_source_flushes_and_leaves_a_valid_wav(registry, tmp_path):
    out = tmp_path / "stopped.wav"
    run = pipeline(registry, "tone:duration=0", ["resample:rate=16000"], [f"wav:{out}"])

    def progress(seconds):
        if seconds >= 1.0:
            run.stop()

    report = await asyncio.wait_for(run.run(progress), 30)
    assert report.stopped
    data, rate = soundfile.read(out, dtype="int16")
    assert rate == 16000
    # every processed frame is in the file, including the resampler's flushed tail
    assert abs(len(data) - report.seconds * 16000) <= 1


async def test_an_exception_in_a_plugin_names_the_plugin(registry, tmp_path):
    out = tmp_path / "partial.wav"
    run = pipeline(registry, "tone:duration=1", ["explode:after=3"], [f"wav:{out}"])
    with pytest.raises(
        PluginError, match=r"explode:after=3 \(from engine_hooks \(-p\)\) failed: ValueError: kaboom"
    ):
        await run.run()
    assert soundfile.info(out).frames == 3 * 960  # what was processed before the failure is kept, valid


async def test_frames_of_other_kinds_pass_processors_untouched(registry):
    run = pipeline(registry, "withdata", ["gain:db=-6"])
    await run.run()
    kinds = [f.kind for f in run.sinks[0].obj.frames]
    assert kinds.count("data") == 3 and kinds.count("audio") == 3
    payloads = [f.payload for f in run.sinks[0].obj.frames if f.kind == "data"]
    assert payloads == [b"x0", b"x1", b"x2"]


async def test_async_processors_and_sinks(registry):
    run = pipeline(registry, "tone:duration=0.5,amplitude=-6", ["asynchalf"])
    await run.run()
    data = np.concatenate([f.data for f in run.sinks[0].obj.frames])
    assert abs(level_dbfs(data) - (-6 - 3.01 - 6.02)) < 0.05  # sine rms is peak - 3.01 dB


def test_gain_hands_on_float_unclipped_as_ffmpegs_volume():
    """ffmpeg -i s16.wav -af volume=20dB -c:a pcm_f32le keeps the boost (float, beyond full scale);
    only an integer output clips it. Before: gain rounded back to s16 and clipped at 32767."""
    loud = to_s16(sine(100, 0.1, 48000, dbfs=-1))
    out, _ = lkplug.process(loud, 48000, "gain:db=20")
    assert out.dtype == np.float32
    expected = loud.astype(np.float32) / 32768 * np.float32(10.0)  # +20 dB
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.max() > 8.8  # -1 dBFS + 20 dB: 19 dB above full scale, not clipped


def test_python_api_numpy_in_numpy_out():
    data = sine(440, 1.0, 48000, channels=2, dbfs=-10)
    out, rate = lkplug.process(data, 48000, "gain:db=-6", "resample:rate=16000", "remix:channels=1")
    assert rate == 16000 and out.shape == (16000, 1) and out.dtype == np.float32
    # ffmpeg -ac 1 on float stereo mixes 0.7071 * (L + R): equal channels come out 3.01 dB louder
    assert abs(level_dbfs(out) - (level_dbfs(data) - 6 + 3.01)) < 0.05


def test_python_api_push_frames():
    chain = lkplug.open_chain("resample:rate=8000")
    frames = []
    for i in range(10):
        block = to_s16(sine(300, 0.1, 48000))
        frames += chain.push(lkplug.AudioFrame(block, 48000, i * 4800))
    frames += chain.flush()
    assert sum(f.samples for f in frames) == 8000
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps) and stamps[0] == 0


async def test_fan_out_runs_one_pipeline_per_stream_with_templated_sinks(registry, tmp_path):
    from lkplug.fanout import FanOut

    fan = FanOut(
        lkplug.build(registry, "source", "tones:440+660"),
        ["gain:db=-6"],
        [f"wav:{tmp_path}/{{identity}}-{{freq}}.wav"],
        registry,
    )
    report = await fan.run()
    assert report.seconds == pytest.approx(1.0)
    for freq in (440, 660):
        data, rate = soundfile.read(tmp_path / f"t{freq}-{freq}.wav")
        assert len(data) == rate // 2
        assert dominant_frequency(data, rate) == pytest.approx(freq, abs=2)
        assert level_dbfs(data) == pytest.approx(-6.0 - 3.01 - 6.0, abs=0.1)


async def test_a_fan_out_with_a_duration_ends_when_its_streams_have_run_that_long(registry, tmp_path):
    from lkplug.fanout import FanOut

    fan = FanOut(
        lkplug.build(registry, "source", "tones:freqs=440+660,linger=true"),
        [],
        [f"wav:{tmp_path}/{{identity}}.wav"],
        registry,
    )
    fan.duration = 0.2
    report = await asyncio.wait_for(fan.run(), 10)  # the source itself would wait for more forever
    assert not report.stopped
    for freq in (440, 660):
        assert soundfile.info(tmp_path / f"t{freq}.wav").frames == 0.2 * 48000


async def test_fan_out_reports_a_failed_stream_and_finishes_the_others(registry, tmp_path):
    from lkplug.fanout import FanOut

    fan = FanOut(
        lkplug.build(registry, "source", "tones:freqs=440+660,fail=440"),
        [],
        [f"wav:{tmp_path}/{{identity}}.wav"],
        registry,
    )
    with pytest.raises(lkplug.LkplugError, match="1 of 2 streams failed; first: t440: .*stream broke"):
        await fan.run()
    assert len(soundfile.read(tmp_path / "t660.wav")[0]) == 24000
    assert not (tmp_path / "t440.wav").exists()


@pytest.mark.parametrize(
    "sink, message",
    [
        ("wav:same.wav", "give each its own output, e.g. --sink 'wav:rec/{identity}-{source}.wav'"),
        ("wav:{who}.wav", "unknown field {who}; known fields: {identity}, {freq}"),
        ("wav:{identity.wav", "bad template"),
        ("wav:{identity}.wav,subtype=pcm9", "subtype"),
    ],
)
def test_fan_out_sink_templates_are_checked_before_running(registry, sink, message):
    from lkplug.fanout import FanOut

    with pytest.raises(lkplug.UsageError, match=re.escape(message)):
        FanOut(lkplug.build(registry, "source", "tones:440"), [], [sink], registry)


async def test_a_downmix_after_a_resampler_runs_first_with_the_same_result(registry):
    stereo = lkplug.AudioFrame(to_s16(sine(1000, 1.0, 48000, 2)), 48000)
    run = pipeline(registry, "tone:rate=48000,channels=2", ["resample:rate=16000", "remix:channels=1"])
    plan = run.explain()
    assert plan.index("remix:channels=1") < plan.index("resample:rate=16000")  # fewer channels to filter
    swapped, rate = lkplug.process(stereo.data, 48000, "resample:rate=16000", "remix:channels=1")
    by_hand, _ = lkplug.process(
        lkplug.process(stereo.data, 48000, "resample:rate=16000")[0][:, :1], 16000
    )  # resample both channels, then take one (the channels are equal)
    assert rate == 16000 and swapped.shape == by_hand.shape
    assert np.abs(swapped.astype(int) - by_hand.astype(int)).max() <= 2  # rounding only


async def test_a_stop_as_the_run_starts_ends_it(registry):
    # stop() at the run's first suspension: the source task is cancelled before its first step, so
    # its own code never runs (a batch worker stopped by Ctrl-C hung here)
    run = lkplug.Pipeline.from_specs("tone:duration=5", [], ["null"], registry)
    task = asyncio.ensure_future(run.run())
    await asyncio.sleep(0)  # the run takes its first step: it creates the source task and waits
    run.stop()
    report = await asyncio.wait_for(task, 10)
    assert report.stopped and report.frames == 0


@pytest.mark.parametrize(
    "procs, sinks, frame_ms",
    [
        ((), ("collect",), 100.0),  # a recording: nothing needs short frames
        (("gain:-6", "resample:16000"), ("null",), 100.0),
        (("needs10ms",), ("collect",), 10),  # a stage's contract asks for 10 ms frames
        ((), ("track:processed",), 10),  # a real-time sink (a relay): no batching latency
    ],
)
def test_a_live_source_is_told_the_frame_length_the_chain_needs(registry, procs, sinks, frame_ms):
    from lkplug_livekit.source import TrackSource

    run = pipeline(registry, "tone:duration=1", procs, sinks)
    run.explain()  # binds every component
    assert run.context.frame_ms == frame_ms
    track = TrackSource("alice")
    track.bind(run.context)
    assert track.frame_ms == frame_ms  # what it asks the SDK's AudioStream for


def test_a_frame_older_than_one_paced_neither_waits_nor_moves_the_pace():
    """A video decoder gives its last pictures only at the end of the file, after the audio beside
    them: frames already due, not a sign that the run fell behind. Before: a picture 1.9 s older
    than the audio paced before it was taken for a run 1.9 s behind, and the pace moved on by that
    much: 1.9 s of silence before the last audio of a file whose video ends 2 s before its audio
    (published to a room, every listener heard it; the run took 8.96 s for 7.02 s)."""
    from types import SimpleNamespace

    run = Pipeline.from_specs("tone:duration=5", [], ["null"], lkplug.Registry.load(), pace=1.0)

    async def pace(times):
        for at in times:
            await run._wait_for_pace(SimpleNamespace(time=at))

    asyncio.run(pace([0.0]))
    origin = run._pace_origin
    run._pace_origin -= 7.0  # as if media time 0 was due 7 s ago: the audio of 6.9 s is due now
    asyncio.run(pace([6.9, 4.9, 4.95, 6.95]))  # the last pictures (4.9, 4.95) come after the audio
    assert run._pace_origin == origin - 7.0
