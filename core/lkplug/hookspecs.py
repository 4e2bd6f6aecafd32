"""The hooks a plugin implements: the plugin author's reference.

Hooks declare what a plugin provides; they are called once, when the registry is built. Frames never
pass through a hook: the engine builds each component once and calls the object directly.

A plugin is a module (or object) with functions decorated by ``lkplug.hookimpl``, registered by an
entry point in the group ``lkplug``::

    [project.entry-points.lkplug]
    mygate = "lkplug_mygate"

Every hook may be implemented by any number of plugins; the registry gathers all their results.
"""

from __future__ import annotations

from collections.abc import Iterable

import click
import pluggy

from .components import Component

PROJECT = "lkplug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lkplug_sources() -> Iterable[Component]:
    """Return the frame sources this plugin provides.

    Each ``Component.factory(**params)`` builds an object with ``probe()``, an async ``frames()``
    iterator and ``aclose()`` (see ``lkplug.Source``).

    :return: components, e.g. ``[Component("tone", ToneSource, "sine, noise or silence", params)]``
    """


@hookspec
def lkplug_processors() -> Iterable[Component]:
    """Return the processors this plugin provides.

    Each ``Component.factory(**params)`` builds an object with ``accepts`` (kind -> contract),
    ``output_format(fmt)``, ``process(frame) -> list`` and ``flush() -> list`` (see
    ``lkplug.Processor``). A processor whose ``converts`` names a conversion (``"rate"``) is also what
    the engine inserts automatically where contracts need that conversion.
    """


@hookspec
def lkplug_sinks() -> Iterable[Component]:
    """Return the sinks this plugin provides.

    Each ``Component.factory(**params)`` builds an object with ``accepts``, ``start(formats)``,
    ``write(frame)`` and ``close()`` (see ``lkplug.Sink``); ``close`` runs on every exit path.
    """


@hookspec
def lkplug_register_commands(cli: click.Group) -> None:
    """Add commands to the ``lkplug`` command line (e.g. ``lkplug devserver``).

    :param cli: the top-level click group; call ``cli.add_command(...)``.
    """


@hookspec
def lkplug_run_options() -> Iterable[click.Option]:
    """Return extra options for ``lkplug run`` (e.g. ``--room`` and credentials for a service).

    Their values reach every component through ``bind(context)`` as ``context.options[name]``, where
    ``name`` is the option's parameter name (``--api-key`` gives ``api_key``).
    """
