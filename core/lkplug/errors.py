"""Errors that end a run with one clear line. ``exit_code`` follows the CLI's convention:
2 for a usage error (a bad spec or parameter), 1 for a failure while running."""

from __future__ import annotations


class LkplugError(Exception):
    """Base of every error lkplug reports as one line."""

    exit_code = 1


class UsageError(LkplugError, ValueError):
    exit_code = 2


class SpecError(UsageError):
    """A component spec string that cannot be parsed."""


class ParamError(UsageError):
    """A parameter value that does not fit its schema."""


class UnknownComponentError(UsageError, LookupError):
    """A name that no loaded plugin provides."""


class NegotiationError(LkplugError):
    """Two stages whose frame contracts no converter can join."""


class MediaError(LkplugError):
    """Input that cannot be read, or output that cannot be written."""


class PluginError(LkplugError):
    """An exception raised inside a plugin's component; names the plugin."""


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt behind ``exc`` (``exc`` itself, or one it was raised from or while
    handling), if there is one: a Ctrl-C, or a SIGTERM while lkplug starts. Python 3.11 wraps one
    that lands while a module defines a class with descriptors (a dataclass ``field()``) in
    ``RuntimeError("Error calling __set_name__ ...")``; a library may wrap one in an error of its own."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
