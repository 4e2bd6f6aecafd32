"""`lkplug new-plugin NAME` writes a package that installs, passes its own tests and shows in the list."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, run_lkplug
from freshenv import make_env_beside_lkplug, run

from lkplug import UsageError
from lkplug.scaffold import plugin_names


def test_new_plugin_installs_passes_its_tests_and_is_listed(tmp_path):
    made = run_lkplug("new-plugin", "demo-filter", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    package = tmp_path / "lkplug-demo-filter"
    assert (package / "pyproject.toml").is_file() and "pip install -e" in made.stdout
    for ruff in (["check", "--select", "E,F,W,I,B,UP"], ["format", "--check"]):  # as its author sees it
        linted = subprocess.run(
            [sys.executable, "-m", "ruff", *ruff, "--isolated", "--line-length", "110", str(package)],
            capture_output=True,
            text=True,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr

    python = make_env_beside_lkplug(tmp_path / "venv")
    installed = run(python, "-m", "pip", "install", "-q", "-e", str(package))
    assert installed.returncode == 0, installed.stderr
    tested = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    listing = json.loads(run(python, "-m", "lkplug", "list", "--json").stdout)
    entry = next(c for c in listing["components"] if c["name"] == "demo-filter")
    assert (entry["role"], entry["distribution"], entry["version"]) == (
        "processor",
        "lkplug-demo-filter",
        "0.1.0",
    )


def test_names_and_refusals(tmp_path):
    assert plugin_names("lkplug-Demo_filter")["package"] == "lkplug_demo_filter"
    assert plugin_names("demo-filter")["cls"] == "DemoFilter"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    line = assert_one_line_error(run_lkplug("new-plugin", "x", "--dir", str(tmp_path / "taken")))
    assert "not empty" in line
    with pytest.raises(UsageError, match="letters, digits and dashes"):
        plugin_names("9 lives")
