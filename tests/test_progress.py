"""The status line and the closing summary: -t as the length, live runs without a real-time factor,
a fan-out's streams one by one."""

from __future__ import annotations

import io
from types import SimpleNamespace

from lkplug.engine import RunReport
from lkplug.progress import StatusLine, summary


def rendered(status: StatusLine, elapsed: float) -> str:
    return status.render(status.started + elapsed)


def test_t_is_the_length_of_a_run_from_a_longer_file():
    status = StatusLine(io.StringIO(), total=60)
    status.start(SimpleNamespace(duration=3600.0))  # an hour-long file, -t 60
    status.update(30.0)
    text = rendered(status, 10.0)
    assert "50%" in text and "00:30.0 / 01:00.0" in text and "1:00:00" not in text, text
    assert "3.0x" in text  # a file job: its speed


def test_a_shorter_file_than_t_keeps_its_estimate():
    status = StatusLine(io.StringIO(), total=60)
    status.start(SimpleNamespace(duration=3.0))
    status.update(1.5)
    assert "50%" in rendered(status, 1.0) and "/ ~00:03.0" in rendered(status, 1.0)


def test_a_live_run_shows_elapsed_time_not_a_speed():
    status = StatusLine(io.StringIO(), total=8)
    status.start(SimpleNamespace(duration=None, live=True))
    status.update(4.0)
    text = rendered(status, 5.5)
    assert text == "live 00:04.0 / 00:08.0 received, 00:05.5 elapsed", text


def test_a_fan_out_shows_each_stream():
    status = StatusLine(io.StringIO(), total=2)
    status.start(SimpleNamespace(duration=None, live=True))
    status.update(2.0, "guest-a/microphone")
    status.update(1.5, "guest-b/microphone")
    text = rendered(status, 3.0)
    assert text == (
        "2 streams (each to 00:02.0): guest-a/microphone 00:02.0, guest-b/microphone 00:01.5; 00:03.0 elapsed"
    ), text


def test_summaries():
    report = RunReport(seconds=6.0, wall=7.5)
    assert summary(report) == "6.00 s of media in 7.50 s (0.8x real time)"
    assert summary(report, live=True) == "6.00 s of media received in 7.50 s"
    report = RunReport(seconds=4.0, wall=3.2, stopped=True)
    assert (
        summary(report, live=True, streams=2)
        == "2 streams, 4.00 s of media in all, in 3.20 s, stopped by signal"
    )


def test_one_stream_is_one_stream():
    """A new user's fan-out of one publisher read "1 streams" on both lines."""
    status = StatusLine(io.StringIO())
    status.start(SimpleNamespace(duration=None, live=True))
    status.update(2.0, "alice/microphone")
    assert rendered(status, 3.0) == "1 stream: alice/microphone 00:02.0; 00:03.0 elapsed"
    report = RunReport(seconds=2.0, wall=3.0)
    assert summary(report, live=True, streams=1) == "1 stream, 2.00 s of media in all, in 3.00 s"
