"""Plugins from the outside: a throwaway distribution installed with pip during the run, -p files,
-p no:NAME, and plugins that are broken in each way a plugin can be."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug

from lkplug import Registry, UnknownComponentError, UsageError, __version__

GOOD = """
import numpy as np
from lkplug import AudioFormat, Component, Param, Processor, hookimpl

class Invert(Processor):
    emits = "the same audio, polarity inverted, as float"
    def output_format(self, fmt):  # it hands on float: say so (the engine checks what it hands on)
        return AudioFormat(fmt.rate, fmt.channels, "flt")
    def process(self, frame):
        return [frame.replace(data=-frame.data.astype(np.float32))]

@hookimpl
def lkplug_processors():
    return [Component("invert", Invert, "Invert the polarity")]
"""
BROKEN_IMPORT = "raise ImportError('needs libfoo 2.0')\n"
MISSPELLED = """
from lkplug import hookimpl
@hookimpl
def lkplug_procesors():
    return []
"""
RAISES_IN_HOOK = """
from lkplug import hookimpl
@hookimpl
def lkplug_sinks():
    raise RuntimeError("sink registry exploded")
"""


@pytest.fixture(scope="session")
def third_party_site(tmp_path_factory) -> Path:
    """pip-installs a distribution with four plugins (one good, three broken) into a folder."""
    project = tmp_path_factory.mktemp("lkplug-extras")
    modules = {
        "lkx_invert": GOOD,
        "lkx_broken": BROKEN_IMPORT,
        "lkx_typo": MISSPELLED,
        "lkx_raises": RAISES_IN_HOOK,
    }
    for name, code in modules.items():
        (project / name).mkdir()
        (project / name / "__init__.py").write_text(textwrap.dedent(code))
    entry_points = "\n".join(f'{name.removeprefix("lkx_")} = "{name}"' for name in modules)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "lkplug-extras"
            version = "1.2.3"
            [tool.setuptools]
            packages = {json.dumps(list(modules))}
            [project.entry-points.lkplug]
            """
        )
        + entry_points
        + "\n"
    )
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(project)],
        check=True,
        timeout=300,
    )
    return site


def test_installed_distribution_shows_in_list_with_its_name_and_version(third_party_site):
    result = run_lkplug("list", "--json", env={"PYTHONPATH": str(third_party_site)})
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    invert = next(c for c in listing["components"] if c["name"] == "invert")
    assert (invert["role"], invert["distribution"], invert["version"]) == (
        "processor",
        "lkplug-extras",
        "1.2.3",
    )
    builtins = {c["name"]: c for c in listing["components"] if c["distribution"] == "lkplug"}
    assert {"tone", "file", "gain", "resample", "remix", "wav", "null"} <= set(builtins)


def test_broken_plugins_are_listed_with_their_error_and_the_rest_keep_working(third_party_site, tmp_path):
    env = {"PYTHONPATH": str(third_party_site)}
    listing = json.loads(run_lkplug("list", "--json", env=env).stdout)
    errors = {b["plugin"]: b["error"] for b in listing["broken"]}
    assert "needs libfoo 2.0" in errors["broken"]
    assert "lkplug_procesors" in errors["typo"] and "lkplug_processors" in errors["typo"]
    assert "sink registry exploded" in errors["raises"]
    text = run_lkplug("list", env=env).stdout
    assert "broken plugin 'broken' (lkplug-extras 1.2.3): ImportError: needs libfoo 2.0" in text

    out = tmp_path / "inv.wav"
    result = run_lkplug(
        "run", "--source", "tone:duration=0.5", "--proc", "invert", "--sink", f"wav:{out}", env=env
    )
    assert result.returncode == 0, result.stderr
    data, _ = soundfile.read(out, dtype="int16")
    assert len(data) == 24000 and data[1:50].max() < 0  # a sine starting at 0 going up, inverted


def test_hooks_from_a_file_with_dash_p(tmp_path):
    hooks = tmp_path / "myhooks.py"
    hooks.write_text(GOOD)
    listing = run_lkplug("list", "-p", str(hooks)).stdout
    assert "invert" in listing and "myhooks (-p)" in listing
    result = run_lkplug(
        "run", "-p", str(hooks), "--source", "tone:duration=0.2", "--proc", "invert", "--sink", "null"
    )
    assert result.returncode == 0, result.stderr


def test_a_dash_p_file_that_fails_to_load_is_a_clear_error(tmp_path):
    hooks = tmp_path / "bad.py"
    hooks.write_text("import does_not_exist\n")
    result = run_lkplug("run", "-p", str(hooks), "--source", "tone", "--sink", "null")
    assert "cannot load plugin 'bad'" in assert_one_line_error(result)
    assert result.returncode == 2


def test_dash_p_no_disables_a_plugin():
    registry = Registry.load(["no:audio"])
    assert {e.name for e in registry.entries()} >= {"wav", "file"}
    with pytest.raises(UnknownComponentError, match="unknown processor 'gain'"):
        registry.get("processor", "gain")


def test_environment_variable_adds_plugins(tmp_path, monkeypatch):
    (tmp_path / "envhooks.py").write_text(GOOD)
    monkeypatch.setenv("LKPLUG_PLUGINS", str(tmp_path / "envhooks.py"))
    assert Registry.load().get("processor", "invert").plugin.origin == "LKPLUG_PLUGINS"


def test_unknown_names_suggest_the_closest(lkplug_cli):
    line = assert_one_line_error(lkplug_cli("run", "--source", "tone", "--proc", "gian", "--sink", "null"))
    assert "unknown processor 'gian'; did you mean 'gain'? `lkplug list` shows all" in line


def test_a_duplicate_name_is_an_error_naming_both_providers(tmp_path):
    hooks = tmp_path / "dupe.py"
    hooks.write_text(GOOD.replace('"invert"', '"gain"'))
    registry = Registry.load([str(hooks)])
    with pytest.raises(UsageError, match=re.escape(f"provided by both lkplug {__version__} and dupe (-p)")):
        registry.get("processor", "gain")
    assert registry.get("processor", "remix")  # everything else still resolves
