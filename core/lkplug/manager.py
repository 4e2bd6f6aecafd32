"""Finding and loading plugins: entry points, ``-p`` modules and files, ``-p no:NAME`` blocking.

Each plugin loads inside its own ``try``: one broken plugin is recorded with its error and every
other plugin keeps working.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pluggy

from . import hookspecs
from .errors import UsageError, interruption

ENTRY_POINT_GROUP = "lkplug"
ENV_PLUGINS = "LKPLUG_PLUGINS"


@dataclass
class PluginInfo:
    """Where a plugin came from, and why it is broken if it is."""

    name: str
    dist: str | None = None  # the distribution that ships it; None for -p modules and files
    version: str | None = None
    origin: str = "entry point"  # or "-p", or the environment variable
    error: str | None = None
    detail: str | None = None  # the traceback behind ``error``, for --debug

    @property
    def provider(self) -> str:
        return f"{self.dist} {self.version}" if self.dist else f"{self.name} ({self.origin})"


def make_plugin_manager(
    plugins: Iterable[str] = (), load_entrypoints: bool = True, environment: bool = True
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A fresh plugin manager with every plugin loaded.

    ``plugins`` are ``-p`` arguments: a module name, a path to a ``.py`` file, or ``no:NAME`` to
    block a plugin by its name (the entry point's) or every plugin of a distribution by the
    distribution's name. ``$LKPLUG_PLUGINS`` adds more, comma-separated, unless ``environment`` is
    False (a batch's worker, whose ``plugins`` hold them already: see ``portable_plugins``). A
    ``no:NAME`` that matches nothing raises UsageError with the closest name.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    requested = env_plugins() if environment else []
    origins = {p: ENV_PLUGINS for p in requested}
    for arg in plugins:
        requested.append(arg.strip())
        origins[arg.strip()] = "-p"
    blocked = {arg.strip()[3:].strip() for arg in requested if arg.strip().startswith("no:")}
    used: set[str] = set()  # blocked names that matched a plugin
    infos: list[PluginInfo] = []
    known: list[str] = []  # every plugin and distribution name, for a suggestion
    if load_entrypoints:
        for ep, dist_name, dist_version in _installed() if _scan is None else _scan:
            names = {ep.name} | ({dist_name, _normalize(dist_name)} if dist_name else set())
            known += sorted(names)
            hit = blocked & names | {b for b in blocked if _normalize(b) in names}
            if hit:
                used |= hit
                pm.set_blocked(ep.name)
                continue
            if pm.has_plugin(ep.name):
                continue
            info = PluginInfo(ep.name, dist_name, dist_version)
            _load(pm, info, ep.load)
            infos.append(info)
    for arg in requested:
        if arg.strip().startswith("no:"):
            continue
        arg = arg.strip()
        info = PluginInfo(_local_name(arg), origin=origins[arg])
        known.append(info.name)
        if info.name in blocked:
            used.add(info.name)
            continue
        _load(pm, info, lambda arg=arg: _import_local(arg))
        infos.append(info)
    for name in sorted(blocked - used):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"-p no:{name}: no plugin or distribution is called {name!r}; {hint}"
            "`lkplug list` shows plugin names in its PLUGIN column"
        )
    return pm, infos


def env_plugins() -> list[str]:
    """The plugins ``$LKPLUG_PLUGINS`` names (comma-separated; blanks around a name dropped)."""
    return [arg.strip() for arg in os.environ.get(ENV_PLUGINS, "").split(",") if arg.strip()]


def portable_plugins(plugins: Iterable[str]) -> tuple[str, ...]:
    """``$LKPLUG_PLUGINS``'s plugins then the ``-p`` ones, each ``.py`` file's path made absolute: what
    ``make_plugin_manager(..., environment=False)`` loads the same in a process that runs in another
    folder, with another environment (a Dask worker)."""
    return tuple(
        os.path.abspath(os.path.expanduser(arg)) if arg.endswith(".py") else arg
        for arg in (*env_plugins(), *(arg.strip() for arg in plugins))
    )


_scan: list | None = None  # the installed entry points while ``scan_once`` holds them


@contextmanager
def scan_once() -> Iterator[None]:
    """Within this block every ``make_plugin_manager`` uses one reading of the installed entry points
    (a command line loads plugins twice: for the commands plugins add, then for the command)."""
    global _scan
    _scan = _installed()
    try:
        yield
    finally:
        _scan = None


def _installed() -> list:
    """``(entry point, distribution name, version)`` for each entry point in the ``lkplug`` group."""
    facts: dict = {}  # one reading of each distribution's metadata (each .name parses it again)
    return [
        (ep, *_name_and_version(getattr(ep, "dist", None), facts))
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    ]


def _name_and_version(dist, facts: dict) -> tuple[str | None, str | None]:
    """A distribution's name and version, its METADATA parsed once per load (not once per look)."""
    if dist is None:
        return None, None
    key = str(getattr(dist, "_path", id(dist)))
    if key not in facts:
        metadata = dist.metadata
        facts[key] = (metadata["Name"], metadata["Version"])
    return facts[key]


def _normalize(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503): ``LKPlug_Delay`` is ``lkplug-delay``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _load(pm: pluggy.PluginManager, info: PluginInfo, load) -> None:
    try:
        plugin = load()
        _check_hook_names(plugin)
        pm.register(plugin, name=info.name)
    except Exception as exc:  # any failure in third-party code becomes a listed error
        record_failure(info, exc)


def record_failure(info: PluginInfo, exc: BaseException) -> None:
    """Mark ``info``'s plugin broken by ``exc``, unless ``exc`` wraps a Ctrl-C: that is raised (the
    plugin is not at fault, and the run must stop, not go on without it)."""
    stop = interruption(exc)
    if stop is not None:
        raise stop
    info.error = f"{type(exc).__name__}: {exc}"
    import traceback  # only for a failure: listing plugins needs none of it

    info.detail = "".join(traceback.format_exception(exc))


def _check_hook_names(plugin) -> None:
    """A misspelled hook would be silently ignored; make it an error instead."""
    known = {name for name in dir(hookspecs) if name.startswith("lkplug_")}
    for name in dir(plugin):
        if name.startswith("lkplug_") and name not in known and callable(getattr(plugin, name)):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise pluggy.PluginValidationError(plugin, f"unknown hook {name!r}{hint}")


def _local_name(arg: str) -> str:
    return Path(arg).stem if arg.endswith(".py") else arg


def _import_local(arg: str):
    """Import ``-p`` argument: a ``.py`` file by path, else a module by name."""
    if not arg.endswith(".py"):
        return importlib.import_module(arg)
    path = Path(arg).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such plugin file: {arg}")
    module_name = f"lkplug_local_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
