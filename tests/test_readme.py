"""README's first command, the main job on the built-in default, does what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile
from conftest import run_lkplug

from lkplug.testing import dominant_frequency, level_dbfs

README = Path(__file__).resolve().parent.parent / "README.md"
SENT_RMS_DB = -6.0 - 3.01  # the demo alice: a sine with a -6 dBFS peak


def main_command() -> list[str]:
    """The lkplug part of the fenced command after ``<!-- main-command -->`` (the install before it is
    what CI has just done)."""
    block = re.search(r"<!-- main-command -->\s*```sh\n(.+?)\n```", README.read_text(), re.S).group(1)
    run = block.split("&& lkplug ", 1)[1]
    return run.split()


@pytest.mark.live
def test_the_main_command_records_the_demo_participant(tmp_path):
    args = main_command()
    assert args[:2] == ["run", "--devserver"] and "wav:out.wav" in args
    result = run_lkplug(*args, cwd=tmp_path, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "the dev server logged an error" not in result.stderr  # a traceback in its log
    data, rate = soundfile.read(tmp_path / "out.wav")
    assert len(data) == 5 * rate
    heard = data[int(rate * 0.75) :]  # past the first packets and the decoder's fade-in
    assert dominant_frequency(heard, rate) == pytest.approx(440, abs=2)
    assert level_dbfs(heard) == pytest.approx(SENT_RMS_DB - 6.0, abs=0.5)
