"""Parameters whose valid values the LiveKit SDK constrains are declared and checked before any native
call (issue 17): a queue size the SDK cannot take was a Rust panic (exit 134)."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error

from lkplug import ParamError, UsageError
from lkplug.components import Param
from lkplug_livekit.sink import TrackSink


@pytest.mark.parametrize("queue_ms", ["15", "5", "2001", "205"])
def test_a_queue_size_the_sdk_cannot_take_is_a_usage_error(lkplug_cli, queue_ms):
    result = lkplug_cli(
        "run",
        "--source",
        "tone:duration=1",
        "--sink",
        f"track:x,queue_ms={queue_ms}",
        "--url",
        "ws://127.0.0.1:9",
    )
    line = assert_one_line_error(result)
    assert result.returncode == 2
    assert f"track:queue_ms={queue_ms}: expected a value in [0, 2000] in steps of 10" in line


def test_a_step_is_checked_from_the_minimum():
    param = Param("queue_ms", int, 200, min=10, max=2000, step=10)
    assert [param.parse(text) for text in ("10", "20", "2000")] == [10, 20, 2000]
    with pytest.raises(ParamError):
        param.parse("25")


def test_the_python_api_checks_it_too():
    with pytest.raises(UsageError, match="multiples of 10 ms"):
        TrackSink("x", queue_ms=15)
