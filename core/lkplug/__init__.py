"""lkplug: plugin-based processing of raw audio and video from LiveKit rooms and media files.

The core defines frames, the hook specifications for the three roles (sources, processors, sinks),
the registry that gathers plugins, and the engine that runs them. Everything that touches a real
format or service (LiveKit, FFmpeg, WAV) is a plugin.
"""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("lkplug")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

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
    "open_chain",
    "parse_spec",
    "process",
]
