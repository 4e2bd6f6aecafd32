"""lkplug: plugin-based processing of raw audio and video from LiveKit rooms and media files.

The core defines frames, the hook specifications for the three roles (sources, processors, sinks),
the registry that gathers plugins, and the engine that runs them. Everything that touches a real
format or service (LiveKit, FFmpeg, WAV) is a plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from .api import OpenChain, open_chain, process
    from .chain import Built, Chain
    from .components import (
        REQUIRED,
        AudioContract,
        Component,
        Param,
        Processor,
        RunContext,
        Sink,
        Source,
        Stage,
        VideoContract,
        lazy,
    )
    from .engine import Pipeline, RunReport, build
    from .errors import (
        LkplugError,
        MediaError,
        NegotiationError,
        ParamError,
        PluginError,
        SpecError,
        UnknownComponentError,
        UsageError,
    )
    from .frames import PIXEL_FORMATS, AudioFormat, AudioFrame, Frame, VideoFormat, VideoFrame
    from .hookspecs import hookimpl, hookspec
    from .outputs import OutputFile
    from .registry import Registry
    from .spec import Spec, format_spec, parse_spec

# name -> the submodule that defines it. Importing a submodule costs what it imports (numpy, asyncio):
# `from lkplug import Component` (a plugin registering) should not pay for the engine.
_EXPORTS = {
    "OpenChain": "api",
    "open_chain": "api",
    "process": "api",
    "Built": "chain",
    "Chain": "chain",
    "REQUIRED": "components",
    "AudioContract": "components",
    "Component": "components",
    "Param": "components",
    "Processor": "components",
    "RunContext": "components",
    "Sink": "components",
    "Source": "components",
    "Stage": "components",
    "VideoContract": "components",
    "lazy": "components",
    "Pipeline": "engine",
    "RunReport": "engine",
    "build": "engine",
    "LkplugError": "errors",
    "MediaError": "errors",
    "NegotiationError": "errors",
    "ParamError": "errors",
    "PluginError": "errors",
    "SpecError": "errors",
    "UnknownComponentError": "errors",
    "UsageError": "errors",
    "PIXEL_FORMATS": "frames",
    "AudioFormat": "frames",
    "AudioFrame": "frames",
    "Frame": "frames",
    "VideoFormat": "frames",
    "VideoFrame": "frames",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "OutputFile": "outputs",
    "Registry": "registry",
    "Spec": "spec",
    "format_spec": "spec",
    "parse_spec": "spec",
}


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("lkplug")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0+unknown"
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})


__all__ = [
    "PIXEL_FORMATS",
    "REQUIRED",
    "AudioContract",
    "AudioFormat",
    "AudioFrame",
    "Built",
    "Chain",
    "Component",
    "Frame",
    "LkplugError",
    "MediaError",
    "NegotiationError",
    "OpenChain",
    "OutputFile",
    "Param",
    "ParamError",
    "Pipeline",
    "PluginError",
    "Processor",
    "Registry",
    "RunContext",
    "RunReport",
    "Sink",
    "Source",
    "Spec",
    "SpecError",
    "Stage",
    "UnknownComponentError",
    "UsageError",
    "VideoContract",
    "VideoFormat",
    "VideoFrame",
    "build",
    "format_spec",
    "hookimpl",
    "hookspec",
    "lazy",
    "open_chain",
    "parse_spec",
    "process",
]
