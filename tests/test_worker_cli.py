"""``lkplug worker``'s usage errors: one line, exit 2, before anything connects."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error, run_lkplug

ENV = {"LIVEKIT_URL": "ws://127.0.0.1:9", "LIVEKIT_API_KEY": "key", "LIVEKIT_API_SECRET": "s" * 32}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--sink", "wav:x.wav"], {"LIVEKIT_URL": ""}, "no LiveKit server"),
        (["--sink", "wav:x.wav"], {"LIVEKIT_API_SECRET": ""}, "no credentials"),
        (["--sink", "wav:rec/{nope}.wav"], {}, "unknown field {nope}"),
        (["--sink", "wav:rec/{room}.wav"], {}, "give each its own output"),
        (
            ["--per", "publisher", "--source", "tone:440", "--sink", "wav:{identity}.wav"],
            {},
            "--per publisher",
        ),
        (
            ["--source", "track:{identity}", "--sink", "wav:{identity}.wav"],
            {},
            "only {identity} (per publisher)",
        ),
        (["--proc", "nope", "--sink", "wav:rec/{room}/{identity}.wav"], {}, "unknown processor 'nope'"),
        # a job's one stream (not a fan-out) fills {room} and {job} only: before, {stem} was written as it is
        (["--source", "tone:440", "--sink", "wav:rec/{room}-{stem}.wav"], {}, "nothing fills {stem} here"),
        (["--sink", "wav:rec/{room}/{identity.upper}.wav"], {}, "unknown field {identity.upper}"),
    ],
)
def test_bad_settings_fail_at_start(args, env, message):
    result = run_lkplug("worker", *args, env={**ENV, **env}, timeout=60)
    line = assert_one_line_error(result)
    assert result.returncode == 2 and message in line, line


def test_help_names_the_dispatch_options():
    result = run_lkplug("worker", "--help")
    assert result.returncode == 0
    for option in (
        "--per",
        "--agent-name",
        "--load-threshold",
        "--max-jobs",
        "--drain-timeout",
        "{room}",
        "{job}",
    ):
        assert option in result.stdout


def test_a_job_fills_its_fields_and_leaves_the_rest_for_its_streams():
    from lkplug_livekit.worker import fill

    # before: text replacement made "{{room}}" (a literal "{room}" in the path) "{r1}", a field
    written = fill("wav:rec/{{room}}/{room}-{job}/{identity}.wav", {"room": "r1", "job": "AJ_1"})
    assert written == "wav:rec/{{room}}/r1-AJ_1/{identity}.wav"
