"""What a plugin declares: components, their parameters and their frame contracts.

A plugin's hooks return :class:`Component` records. The engine builds each component once per run
(``component.factory(**params)``) and from then on calls the object directly: frames never pass
through pluggy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ParamError

REQUIRED = object()  # default of a parameter the user must give
#: the largest magnitude a float parameter takes unless its schema says otherwise: every real media
#: quantity fits (1e12 s is 31,000 years), and values near 1e308 overflow the moment they are scaled
FLOAT_LIMIT = 1e12


@dataclass(frozen=True)
class Param:
    """One parameter of a component, as `lkplug inspect` shows it and the spec parser reads it.

    A float is always finite (``nan`` and ``inf`` are refused) and, where ``min`` or ``max`` is not
    given, within ``FLOAT_LIMIT`` in magnitude.
    """

    name: str
    type: type = str  # int, float, str or bool
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None  # valid values are min + k * step (e.g. the SDK's 10 ms queue sizes)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, text: str, component: str = "") -> Any:
        """Turn the text of a spec into a checked value; raise ParamError saying what was expected."""
        where = f"{component}:{self.name}" if component else self.name
        try:
            if self.type is bool:
                value = _parse_bool(text)
            elif self.type in (int, float):
                value = self.type(text)
            else:
                value = self.type(text)
        except ValueError:
            raise ParamError(f"{where}={text!r}: expected {self.type_name}") from None
        return self.check(value, where)

    def check(self, value: Any, where: str | None = None) -> Any:
        where = where or self.name
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ParamError(f"{where}={value!r}: expected a finite number")
            low = -FLOAT_LIMIT if self.min is None else self.min
            high = FLOAT_LIMIT if self.max is None else self.max
            if not low <= value <= high:
                raise ParamError(f"{where}={value!r}: expected a value in [{low:g}, {high:g}]")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{where}={value!r}: expected one of {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ParamError(f"{where}={value!r}: expected a value in {self.range_text}")
        if self.step is not None and (value - (self.min or 0)) % self.step:
            raise ParamError(f"{where}={value!r}: expected a value in {self.range_text}")
        return value

    @property
    def type_name(self) -> str:
        return {int: "an integer", float: "a number", bool: "true or false"}.get(self.type, "text")

    @property
    def range_text(self) -> str:
        if self.choices is not None:
            return " | ".join(map(str, self.choices))
        if self.min is None and self.max is None:
            return ""
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}]" + (f" in steps of {self.step:g}" if self.step is not None else "")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@dataclass(frozen=True)
class AudioContract:
    """What a stage accepts of audio; None means "anything"."""

    rates: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    sample_formats: tuple[str, ...] | None = None
    frame_ms: float | None = None  # fixed frame duration, e.g. 10 ms for WebRTC's APM
    layouts: tuple[str, ...] | None = None  # FFmpeg layout names, e.g. what an encoder takes

    def describe(self) -> str:
        def one(values, unit=""):
            return "any" if values is None else "/".join(f"{v}{unit}" for v in values)

        frames = "any length" if self.frame_ms is None else f"{self.frame_ms:g} ms"
        layouts = f", layouts {one(self.layouts)}" if self.layouts is not None else ""
        return (
            f"rate {one(self.rates, ' Hz')}, channels {one(self.channels)}{layouts}, "
            f"format {one(self.sample_formats)}, frames {frames}"
        )


@dataclass(frozen=True)
class VideoContract:
    """What a stage accepts of video; None means "anything". Frame rate is not part of it: the
    ``fps`` processor changes it when a user asks."""

    pixel_formats: tuple[str, ...] | None = None

    def describe(self) -> str:
        formats = "any" if self.pixel_formats is None else "/".join(self.pixel_formats)
        return f"pixel format {formats}, any size"


@dataclass(frozen=True)
class Component:
    """A named source, processor or sink that a plugin provides.

    ``factory(**params)`` builds the runtime object. ``positional`` names the parameter that the short
    spec form ``name:value`` sets (``file:in.flac`` sets ``path``). ``converts`` lists the conversions
    the engine may insert this component for when contracts do not match (e.g. ``("rate",)``).
    """

    name: str
    factory: Callable[..., Any]
    summary: str
    params: tuple[Param, ...] = ()
    positional: str | None = None
    converts: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def accepts(self) -> Mapping[str, Any]:
        return getattr(self.factory, "accepts", {})

    @property
    def emits(self) -> str:
        return getattr(self.factory, "emits", "")


class lazy:
    """A component factory named by ``"module:attribute"`` and imported on first use: when a run builds
    the component, or something reads the factory's attributes (``accepts``, ``emits``,
    ``batch_param``; `lkplug inspect`). A plugin's hooks can then declare components without importing
    their implementations and what those import, so `lkplug list` and ``--help`` need none of it and a
    run imports only the stages it uses::

        Component("gain", lazy("lkplug_audio.basic:Gain"), "Change the level", params=(...))

    An import error surfaces where the component is built, as a failure of its plugin.
    """

    def __init__(self, target: str):
        self.target = target
        self._resolved = None

    def resolve(self):
        """The named object (imported once)."""
        if self._resolved is None:
            module, _, name = self.target.partition(":")
            self._resolved = getattr(importlib.import_module(module), name)
        return self._resolved

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str):
        # only names this object lacks get here; a half-built one (copy, pickle) must not recurse
        if name.startswith("__") or name in ("target", "_resolved"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


# Base classes for the runtime objects. Plugins may subclass them or just match their shape.


class Stage:
    """Shared by processors and sinks: which kinds (and formats) they accept."""

    #: kind -> contract; kinds missing here pass through a processor untouched
    accepts: Mapping[str, Any] = {"audio": AudioContract()}
    #: one line for `lkplug inspect`
    emits: str = "the format it takes"

    def bind(self, context: RunContext) -> None:
        """Called once before the run with run-wide settings (e.g. room credentials)."""


class Processor(Stage):
    """Transforms frames. ``process`` may also be ``async def``."""

    #: the same linear, time-invariant filter on every channel (a resampler, a gain): it commutes
    #: with a channel mix, so the planner may downmix first and filter fewer channels
    per_channel_linear: bool = False
    #: a fixed per-sample mix of channels into channels (a remix)
    channel_mix: bool = False
    #: the sample format (FFmpeg's name) the stage computes in whatever its frames carry, as its
    #: FFmpeg filter would (a gain: "flt", as the volume filter); None: the format it is given
    works_in: str | None = None

    def output_format(self, fmt):
        """The format this stage emits for input ``fmt`` (same by default)."""
        return fmt

    def process(self, frame) -> list:
        raise NotImplementedError

    def flush(self) -> list:
        """End of stream: return any frames still held (a resampler's tail, buffered samples). The
        object gets no frames after it: on a format change mid-stream the engine builds a fresh one."""
        return []


class Sink(Stage):
    """Consumes frames. ``write`` and ``close`` may also be ``async def``."""

    emits = "nothing (consumes frames)"

    def start(self, formats: Mapping[str, Any]) -> None:
        """Called before the first frame with the negotiated format per kind (None if not yet known)."""

    #: the files this sink writes (the engine refuses to run when one is the source's input)
    writes: tuple[str, ...] = ()
    #: what went wrong without ending the run, one line each, read once the sink is closed: the run
    #: ends with them as "lkplug: warning: ..." (as ``Source.warnings``)
    warnings: Sequence[str] = ()

    def write(self, frame) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """The stream ended without an error (also on Ctrl-C), just before ``close``: a sink that got
        no frame (an input too short to give one whole output sample) writes a valid empty output."""

    def close(self) -> None:
        """Finalise the output; called on every exit path, also after errors and Ctrl-C."""


class Source:
    """Produces frames through ``frames()``, an async iterator."""

    #: estimated length in seconds, for progress only (None when unknown or live)
    duration: float | None = None
    #: frames arrive at real time by themselves (a room track): ``--pace auto`` never slows them
    live: bool = False
    #: the files this source reads (see ``Sink.writes``)
    reads: tuple[str, ...] = ()
    #: what went wrong without ending the run (damage decoded past, audio a receiver made up), one
    #: line each, read once the run ended: it ends with them as "lkplug: warning: ..."
    warnings: Sequence[str] = ()
    #: stands for many streams (``track:*``): the engine runs one pipeline per stream that
    #: ``instances()`` yields, instead of calling ``frames()``
    fans_out: bool = False
    #: the parameter that may name many inputs (a glob ``rec/*.m4a`` or ``@list.txt``): the CLI then
    #: runs one pipeline per input in worker processes (``lkplug.batch``); None: no batches
    batch_param: str | None = None

    def bind(self, context: RunContext) -> None:
        """Called once before the run with run-wide settings."""

    def probe(self) -> dict[str, Any]:
        """kind -> format the source will emit (None when known only once frames flow). Cheap."""
        raise NotImplementedError

    def frames(self):
        raise NotImplementedError

    # optional: ``take_channel_mix(stage, fmt) -> format | None``. The audio chain starts with
    # ``stage``, a processor that mixes audio in ``fmt`` (what ``probe`` gave) into fewer channels
    # (``channel_mix``): a source that can make that mix from what it holds (a file source, from
    # FFmpeg's planar frames) returns the format it will now give, and ``stage`` passes its frames
    # on as they are; None: it cannot, and gives ``fmt``. Called once, after ``probe``.

    def instances(self):
        """Fan-out sources only: an async iterator of ``(fields, source)``, one per stream found;
        ``fields`` fill the sink templates (``wav:rec/{identity}.wav``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what ``frames()`` or ``instances()`` opened; called on every exit path."""


@dataclass
class RunContext:
    """Run-wide settings that the engine hands to every component through ``bind``.

    ``options`` holds the values of plugin-added ``lkplug run`` options; ``shared`` lets the
    components of one plugin share a resource in a run (one room connection for a source and a sink).
    """

    options: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    #: tells the user what a live component is doing ("waiting for alice…"); the CLI prints it
    notify: Callable[[str], None] = lambda message: None
    #: the media kinds some processor or sink takes (set by the engine), so a source can skip
    #: decoding what nobody wants; None: not known (a source alone)
    kinds: frozenset[str] | None = None
    #: the run's pace (1.0: real time; None: as fast as possible), so a source can size its frames
    pace: float | None = None
    #: the media seconds the run asked for (``-t``; None: until the source ends), so a live source
    #: that ends short can say so
    duration: float | None = None
    #: how long a live source's frames should be, in ms (set by the engine from the chain): short
    #: (10 ms) where a stage or a real-time sink needs them, long where nothing does (a recording),
    #: so Python's per-frame cost is paid 10 times a second instead of 100; None: not known
    frame_ms: float | None = None
    #: the source's frames arrive at real time by themselves (a room track), so a real-time sink
    #: can pass them on as they come instead of pacing them again (set by the engine)
    live: bool = False
