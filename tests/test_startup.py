"""Start-up: a command imports what it uses and no more, read in child processes as users run it.

How long start-up takes is measured in bench/startup.py, never asserted here; these tests hold the
means (what each command imports, one reading of the entry points, lazy commands listed as their
modules would list them)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from lkplug import lazy, manager
from lkplug.cli import CommandGroup, main
from lkplug.registry import Registry

# what a command that runs nothing must not import: the event loop, the SDKs, the engine, the
# built-in components' modules and the commands plugins add
RUN_ONLY = {
    "asyncio",
    "av",
    "soundfile",
    "soxr",
    "livekit",
    "lkplug.engine",
    "lkplug.batch",
    "lkplug.fanin",
    "lkplug.fanout",
    "lkplug_audio.basic",
    "lkplug_audio.tone",
    "lkplug_av.source",
    "lkplug_av.sink",
    "lkplug_livekit.source",
    "lkplug_livekit.sink",
    "lkplug_livekit.worker",
    "lkplug_livekit.devserver.cli",
}

IMPORTED_BY = """
import contextlib, io, sys
from lkplug.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert not exc.code, exc.code
print(" ".join(sorted(sys.modules)))
"""


def imported_by(*args: str) -> set[str]:
    """The modules loaded after ``lkplug ARGS`` ran in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_BY, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "args",
    [("list",), ("list", "--json"), ("--help",), ("--version",), ("inspect", "wav"), ("run", "--help")],
)
def test_commands_that_run_nothing_import_no_engine_sdk_or_component_module(args):
    loaded = imported_by(*args)
    assert "lkplug_audio" in loaded and "lkplug_livekit" in loaded  # the plugins did load
    assert not RUN_ONLY & loaded


def test_a_run_imports_only_its_own_components(tmp_path):
    loaded = imported_by("run", "-q", "--source", "tone:duration=0.1", "--proc", "gain:-6", "--sink", "null")
    assert {"asyncio", "lkplug.engine", "lkplug_audio.tone", "lkplug_audio.basic"} <= loaded
    assert (
        not {"av", "livekit", "soxr", "lkplug_av.source", "lkplug_livekit.source", "lkplug_audio.mix"}
        & loaded
    )
    assert not {"lkplug_livekit.worker", "lkplug_livekit.devserver.cli", "json", "numpy.random"} & loaded


def test_inspect_of_a_component_imports_its_module():
    # its contract is an attribute of the class: reading it is what imports the module
    assert "lkplug_audio.resample" in imported_by("inspect", "resample")


def test_entry_points_are_read_once_per_command(monkeypatch, capsys):
    reads = []
    real = manager.entry_points

    def counted(**kwargs):
        reads.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(manager, "entry_points", counted)
    main(["list"])  # make_cli() loads the plugins, then the command does
    assert "gain" in capsys.readouterr().out
    assert reads == [{"group": "lkplug"}]


@pytest.mark.parametrize("width", [60, 100])
def test_help_lists_a_lazy_command_as_the_imported_command_would_be_listed(width):
    group = CommandGroup(help="lkplug")
    Registry.load().register_commands(group)
    assert set(group.lazy_commands) == {"devserver", "worker"}  # the built-in plugin adds them by name

    def listing() -> str:
        return group.get_help(click.Context(group, info_name="lkplug", terminal_width=width))

    lazy_listing = listing()
    for name in list(group.lazy_commands):
        group.get_command(None, name)  # imports the command's module
    assert not group.lazy_commands
    assert "devserver" in lazy_listing and "worker" in lazy_listing
    assert listing() == lazy_listing


def test_a_lazy_factory_is_the_named_class_once_used():
    from lkplug_audio.basic import Gain

    factory = lazy("lkplug_audio.basic:Gain")
    assert repr(factory) == "lazy('lkplug_audio.basic:Gain')"
    assert factory.accepts == Gain.accepts and factory.emits == Gain.emits
    assert isinstance(factory(db=-6.0), Gain)
    with pytest.raises(AttributeError):
        factory.no_such_attribute  # noqa: B018 (the attribute read is the test)


def test_every_exported_name_is_listed_once_and_resolves():
    """lkplug/__init__.py names its exports three times (for type checkers, for the lazy loader, for
    ``import *``): they must agree, and each must come from the submodule the loader names."""
    import importlib

    import lkplug

    assert sorted(lkplug.__all__) == sorted(lkplug._EXPORTS)
    for name, module in lkplug._EXPORTS.items():
        assert getattr(lkplug, name) is getattr(importlib.import_module(f"lkplug.{module}"), name)
