"""The file source's clock on decoded frames made here: frames that continue the audio exactly take a
short way into the FIFO; whatever breaks that (a hole in the timestamps, another layout or rate, a
time base that does not count whole samples) must come out as the whole way gives it."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from lkplug_av.source import _Clock

RATE = 48000
FRAME = 1024


def decoded(pts: int, layout: str = "stereo", rate: int = RATE, time_base=Fraction(1, RATE), seed: int = 0):
    """One decoded-like fltp frame of FRAME samples at ``pts`` (in ``time_base``), with its samples."""
    channels = av.AudioLayout(layout).nb_channels
    data = np.random.default_rng(seed).uniform(-0.5, 0.5, (channels, FRAME)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, time_base
    return frame, data.T


class CountingClock(_Clock):
    """Counts the frames that went the whole way (``_audio``), to know the short way was taken."""

    whole_way = 0

    def _audio(self, frame, seconds, several):
        self.whole_way += 1
        return super()._audio(frame, seconds, several)


def run_clock(frames) -> tuple[list, CountingClock]:
    clock = CountingClock(None, 1.0, {"audio"})
    items = (("audio", frame.time, frame) for frame in frames)
    return list(clock.frames(items, 0.0, False)) + list(clock.end_pass()), clock


@pytest.mark.parametrize("time_base", [Fraction(1, RATE), Fraction(1, 90000)])
def test_a_hole_after_steady_frames_starts_a_block_at_its_time(time_base):
    # 10 frames, a 0.1 s hole (4800 samples), 10 more; in a 1/90000 time base (MPEG-TS) a frame of
    # 1024 samples spans 1920 ticks, a whole number, so both take the short way until the hole
    per_sample = Fraction(1, RATE) / time_base
    made = [decoded(int(i * FRAME * per_sample), time_base=time_base, seed=i) for i in range(10)]
    made += [
        decoded(int((i * FRAME + 4800) * per_sample), time_base=time_base, seed=i) for i in range(10, 20)
    ]
    blocks, clock = run_clock([frame for frame, _ in made])
    assert [(b.timestamp, b.samples) for b in blocks] == [(0, 10 * FRAME), (10 * FRAME + 4800, 10 * FRAME)]
    expected = np.concatenate([samples for _, samples in made])
    assert np.array_equal(np.concatenate([b.data for b in blocks]), expected)
    assert clock.file_end == pytest.approx((20 * FRAME + 4800) / RATE)
    assert clock.whole_way == 2  # the first frame and the one after the hole


def test_steady_frames_fill_blocks_of_the_block_length():
    made = [decoded(i * FRAME, seed=i) for i in range(100)]  # 2.13 s
    blocks, clock = run_clock([frame for frame, _ in made])
    assert [b.samples for b in blocks] == [48128, 48128, 100 * FRAME - 2 * 48128]
    assert [b.timestamp for b in blocks] == [0, 48128, 96256]
    assert clock.whole_way == 1
    assert np.array_equal(np.concatenate([b.data for b in blocks]), np.concatenate([s for _, s in made]))


@pytest.mark.parametrize("change", ["layout", "rate"])
def test_a_format_change_with_continuing_timestamps_is_converted_to_the_first_format(change):
    # the FIFO itself refuses another rate, but not another layout: the short way must check it
    made = [decoded(i * FRAME, seed=i) for i in range(5)]
    other = {"layout": {"layout": "mono"}, "rate": {"rate": 44100}}[change]
    made += [decoded(i * FRAME, seed=i, **other) for i in range(5, 10)]
    blocks, clock = run_clock([frame for frame, _ in made])
    assert {b.channels for b in blocks} == {2} and {b.layout for b in blocks} == {"stereo"}
    assert "audio changed mid-stream" in clock.notes()[0]
    first = np.concatenate([b.data for b in blocks])[: 5 * FRAME]
    assert np.array_equal(first, np.concatenate([s for _, s in made[:5]]))
    if change == "layout":  # same rate: libswresample upmixes mono to both channels, sample for sample
        assert sum(b.samples for b in blocks) == 10 * FRAME
