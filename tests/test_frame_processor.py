"""ChainFrameProcessor: an lkplug chain inside the real SDK's ``rtc.AudioStream(noise_cancellation=...)``,
on a local loopback track (no server) and on a track received through the local dev server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc

from lkplug import UnknownComponentError
from lkplug.testing import delay, dominant_frequency, level_dbfs, sine, to_s16
from lkplug_livekit.frame_processor import ChainFrameProcessor

RATE, FRAME = 48000, 480


async def collect(stream: rtc.AudioStream, frames: int) -> list[np.ndarray]:
    got = []
    async for event in stream:
        got.append(
            np.frombuffer(event.frame.data, np.int16).reshape(event.frame.samples_per_channel, -1).copy()
        )
        if len(got) >= frames:
            break
    await stream.aclose()
    return got


async def loopback(processor: ChainFrameProcessor, signal: np.ndarray, channels: int = 1):
    """Capture ``signal`` into a local track; read it back plain and through ``processor``."""
    source = rtc.AudioSource(RATE, channels, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("loopback", source)
    plain = rtc.AudioStream(track, sample_rate=RATE, num_channels=channels)
    processed = rtc.AudioStream(track, sample_rate=RATE, num_channels=channels, noise_cancellation=processor)

    async def feed():
        for start in range(0, len(signal), FRAME):
            chunk = signal[start : start + FRAME]
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, channels, len(chunk)))

    feeder = asyncio.create_task(feed())
    try:
        frames = len(signal) // FRAME
        a, b = await asyncio.wait_for(asyncio.gather(collect(plain, frames), collect(processed, frames)), 20)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await source.aclose()
    return a, b


async def test_gain_inside_an_audio_stream_on_a_loopback_track():
    signal = to_s16(sine(440, 0.6, RATE, dbfs=-10))
    plain, processed = await loopback(ChainFrameProcessor("gain:db=-6"), signal)
    assert [len(f) for f in processed] == [len(f) for f in plain]
    plain, processed = np.concatenate(plain), np.concatenate(processed)
    assert level_dbfs(processed) - level_dbfs(plain) == pytest.approx(-6.0, abs=0.05)


async def test_a_chain_that_holds_samples_keeps_frame_lengths_and_a_steady_delay():
    signal = to_s16(sine(1000, 1.0, RATE, channels=2, dbfs=-10))
    chain = ChainFrameProcessor("remix:1", "resample:rate=16000", "apm:noise_suppression=false")
    plain, processed = await loopback(chain, signal, channels=2)
    assert [f.shape for f in processed] == [f.shape for f in plain]  # back to 48 kHz stereo, 10 ms
    plain, processed = np.concatenate(plain), np.concatenate(processed)
    lag = delay(plain, processed)
    assert 0 <= lag < RATE // 10
    assert dominant_frequency(processed[RATE // 2 :], RATE) == pytest.approx(1000, abs=3)


def test_unknown_processors_fail_when_the_adapter_is_made():
    with pytest.raises(UnknownComponentError, match="did you mean 'gain'"):
        ChainFrameProcessor("gian:-6")


def frame_levels(frames: list[np.ndarray]) -> float:
    """The median level of the frames that carry sound (robust to the dropouts of a live link)."""
    levels = [level_dbfs(f) for f in frames if np.abs(f).max() > 100]
    return float(np.median(levels))


@pytest.mark.live
async def test_gain_inside_an_audio_stream_of_a_track_received_from_the_server(livekit_join):
    alice = await livekit_join("alice")
    await alice.publish_sine(440, dbfs=-6)
    bob = await livekit_join("bob")
    track = await bob.remote_track("alice")
    plain = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    processed = rtc.AudioStream(
        track, sample_rate=RATE, num_channels=1, noise_cancellation=ChainFrameProcessor("gain:db=-6")
    )
    a, b = await asyncio.wait_for(asyncio.gather(collect(plain, 150), collect(processed, 150)), 30)
    difference = frame_levels(b) - frame_levels(a)
    print(f"measured gain through the server: {difference:+.2f} dB")
    assert difference == pytest.approx(-6.0, abs=0.5)
