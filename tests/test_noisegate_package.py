"""examples/lkplug-noisegate installed the way an outsider's plugin is: `pip install` into a fresh
virtual environment beside lkplug, then found through its entry point, run from the CLI and from
Python, and its own tests pass there.

To stay lean, the fresh environment sees this one's packages (lkplug and its dependencies) beside its
own (see freshenv.py); `tox -e noisegate` does the same from nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from freshenv import make_env_beside_lkplug, run

ROOT = Path(__file__).resolve().parent.parent
NOISEGATE = ROOT / "examples" / "lkplug-noisegate"


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    python = make_env_beside_lkplug(tmp_path_factory.mktemp("fresh") / "venv")
    before = run(python, "-m", "lkplug", "list")
    assert before.returncode == 0 and "noisegate" not in before.stdout, before.stdout + before.stderr
    installed = run(python, "-m", "pip", "install", "-q", str(NOISEGATE))
    assert installed.returncode == 0, installed.stderr
    return python


def test_lkplug_list_shows_the_installed_distribution(python):
    listing = json.loads(run(python, "-m", "lkplug", "list", "--json").stdout)
    gate = next(c for c in listing["components"] if c["name"] == "noisegate")
    assert (gate["role"], gate["distribution"], gate["version"]) == ("processor", "lkplug-noisegate", "0.1.0")
    assert "lkplug-noisegate 0.1.0" in run(python, "-m", "lkplug", "list").stdout


def test_inspect_shows_its_parameters(python):
    text = run(python, "-m", "lkplug", "inspect", "noisegate").stdout
    for param in ("threshold", "attack", "release", "hold"):
        assert f"\n  {param} " in text, text
    assert "lkplug-noisegate 0.1.0" in text


@pytest.mark.parametrize("amplitude, gated", [(-50, True), (-20, False)])
def test_runs_from_the_cli_and_gates(python, tmp_path, amplitude, gated):
    out = tmp_path / "out.wav"
    result = run(
        python,
        *("-m", "lkplug", "run", "--source", f"tone:freq=440,amplitude={amplitude},duration=1"),
        *("--proc", "noisegate:threshold=-40", "--sink", f"wav:{out}"),
    )
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, dtype="int16")
    assert (rate, len(data)) == (48000, 48000)
    peak = np.abs(data[4800:]).max()
    assert peak == 0 if gated else abs(20 * np.log10(peak / 32768) - amplitude) < 0.1


def test_runs_from_python(python):
    code = (
        "import numpy as np, lkplug\n"
        "t = np.arange(48000) / 48000\n"
        "quiet = (0.001 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)\n"
        "out, rate = lkplug.process(quiet, 48000, 'noisegate:threshold=-40')\n"
        "print(rate, len(out), float(abs(out).max()))\n"
    )
    result = run(python, "-c", code)
    assert result.stdout.split() == ["48000", "48000", "0.0"], result.stderr


def test_its_own_tests_pass_where_it_is_installed(python, tmp_path):
    result = run(
        python,
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)),
        str(NOISEGATE / "tests"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
