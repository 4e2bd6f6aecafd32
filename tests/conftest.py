"""Fixtures shared by the suite: the CLI as a real subprocess, generated media, ../shared/media."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the local LiveKit-protocol server and its participants (livekit_server, livekit_join)
pytest_plugins = ["lkplug_livekit.devserver.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = ROOT.parent / "shared" / "media"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The real-world media beside the checkout; tests that use it skip when it is absent."""
    if not (SHARED_MEDIA / "expect.json").is_file():
        pytest.skip(f"{SHARED_MEDIA} is absent (it is material beside the checkout, not part of it)")
    return SHARED_MEDIA


def run_lkplug(
    *args: str, env: dict | None = None, timeout: float = 120, cwd=None
) -> subprocess.CompletedProcess:
    """Run the installed CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "lkplug", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def lkplug_cli():
    return run_lkplug


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``-n 2 --dist loadgroup`` in pyproject.toml), the live tests that measure
    media in time (levels, edges, lengths, latency) run one after another on one worker, in real time:
    never two side by side, whose media would compete for the machine's two cores. Those marked
    ``untimed`` (errors, hints, the dev server's faults and process: nothing measured in time) are a
    second group, which xdist starts on the other worker, beside the first; the rest fill in after.
    Before, every live test was in the one group, the run's long pole (720 s of 1260 s of tests on two
    workers). Untimed tests that load the machine stay with the timed ones (agents workers starting,
    a 1280x720 video: beside the mix tests they made those fail). A live test that names its own
    group (``@pytest.mark.xdist_group``) keeps it."""
    for item in items:
        if item.get_closest_marker("live") and not item.get_closest_marker("xdist_group"):
            group = "live-untimed" if item.get_closest_marker("untimed") else "live"
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session, exitstatus):
    session.config.lkplug_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After everything pytest reports and writes: leave without the interpreter's teardown when the
    LiveKit SDK ran in this process (the test participants). The SDK disposes its native runtime at
    exit, and that has aborted a process after its work was done (see lkplug.cli.console)."""
    status = getattr(config, "lkplug_exitstatus", None)
    if status is not None and "livekit.rtc" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def dead_pid() -> int:
    """The PID of a process that has ended (what a killed run's temporary names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def assert_one_line_error(result: subprocess.CompletedProcess) -> str:
    """A failure as users should see it: non-zero exit, one line on stderr, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lkplug: error: "), lines[0]
    return lines[0]


def pytest_terminal_summary(terminalreporter):
    """How many shared media files got each verdict's behaviour (test_shared_media records it)."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, ()):
            verdict = dict(getattr(report, "user_properties", ())).get("verdict")
            if verdict and report.when == "call":
                counts.setdefault(verdict, {}).setdefault(outcome, 0)
                counts[verdict][outcome] += 1
    if counts:
        terminalreporter.section("shared media: files per verdict")
        for verdict, outcomes in sorted(counts.items()):
            text = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
            terminalreporter.write_line(f"{verdict:<20} {sum(outcomes.values()):>4} files: {text}")


def wait_for_bytes(out: Path, more_than: int, seconds: float = 60) -> None:
    """Wait until a run has written more than ``more_than`` bytes of ``out`` (its temporary while it
    is written; see lkplug.outputs.bytes_written), or ``seconds`` have passed: the moment a test sends
    its signal."""
    from lkplug.outputs import bytes_written

    deadline = time.monotonic() + seconds
    while bytes_written(out) <= more_than and time.monotonic() < deadline:
        time.sleep(0.05)
