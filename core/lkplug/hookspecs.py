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
    ``lkplug.Processor``; subclassing it is optional, and ``output_format``, ``flush`` and ``bind``
    may be left out). A processor whose ``converts`` names a conversion (``"rate"``) is also what
    the engine inserts automatically where contracts need that conversion.

    The engine's side of the contract: ``process`` gets only frames its ``accepts`` takes, and with
    ``frame_ms`` exactly that many samples (silence that completes the last frame is cut again after
    it). ``flush()`` means end of stream: when the input format changes mid-stream the object is
    flushed and a fresh one is built from the same spec (or ``reset()`` is called, for an object the
    engine cannot rebuild), so no state crosses formats.

    The processor's side: ``process`` and ``flush`` return a list (possibly empty) of frames of the
    kind they were given, in the format ``output_format(fmt)`` declared; anything else, and any
    exception (``SystemExit`` and ``KeyboardInterrupt`` included), ends the run with an error naming
    the processor. A processor that clips may count the samples in ``clipped``; the engine reports
    the count at the end of the run.
    """


@hookspec
def lkplug_sinks() -> Iterable[Component]:
    """Return the sinks this plugin provides.

    Each ``Component.factory(**params)`` builds an object with ``accepts``, ``start(formats)``,
    ``write(frame)`` and ``close()`` (see ``lkplug.Sink``; ``start``, ``close`` and ``bind`` are
    optional); ``close`` runs on every exit path, also on a second Ctrl-C while a stage blocks
    (then from another thread). A sink gets only frames of the kinds in its ``accepts``, and
    ``start`` only their formats; a run where a sink takes none of the source's kinds is a usage error.
    """


@hookspec
def lkplug_register_commands(cli: click.Group) -> None:
    """Add commands to the ``lkplug`` command line (e.g. ``lkplug devserver``).

    :param cli: the top-level click group; call ``cli.add_command(...)``, or
        ``cli.add_lazy_command(name, "module:attribute")`` so the command's module is imported only
        when it runs (or ``lkplug --help`` lists it), not at every start.
    """


@hookspec
def lkplug_run_options() -> Iterable[click.Option]:
    """Return extra options for ``lkplug run`` (e.g. ``--room`` and credentials for a service).

    Their values reach every component through ``bind(context)`` as ``context.options[name]``, where
    ``name`` is the option's parameter name (``--api-key`` gives ``api_key``).
    """
