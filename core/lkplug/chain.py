"""A chain: the processors for one kind of media, with converters wherever contracts need them.

Planning walks the stages with the stream's format in hand. Where a stage's contract does not accept
that format, the planner inserts the conversions (channels, rate, sample format, frame size), or stops
with a NegotiationError naming the stage. The planned chain then runs frames through plain method
calls; the only per-frame cost beyond the stages themselves is a loop and an exception guard.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .components import AudioContract, VideoContract
from .convert import Rechunker, SampleFormatConverter, pick, pick_layout
from .errors import LkplugError, NegotiationError, PluginError
from .frames import AudioFormat, VideoFormat, layout_channels


@dataclass
class Built:
    """A component object with the spec it was built from and who provides it."""

    label: str
    obj: Any
    provider: str = "lkplug"
    inserted: bool = False  # put in by the engine, not asked for by the user

    def describe_failure(self, exc: BaseException) -> str:
        return f"{self.label} (from {self.provider}) failed: {type(exc).__name__}: {exc}"


@dataclass
class Step:
    built: Built
    in_format: Any
    out_format: Any
    is_async: bool = field(init=False)

    def __post_init__(self):
        self.is_async = inspect.iscoroutinefunction(self.built.obj.process)


# kind -> function(fmt, contract, why, make_converter) -> list[Built]
CONVERTER_PLANNERS: dict[str, Callable[..., list[Built]]] = {}


class Chain:
    """Runs frames of one kind through a planned list of steps."""

    def __init__(self, kind: str, in_format: Any, steps: list[Step]):
        self.kind = kind
        self.in_format = in_format
        self.steps = steps
        self.out_format = steps[-1].out_format if steps else in_format
        self.is_async = any(step.is_async for step in steps)

    @classmethod
    def plan(cls, kind: str, fmt: Any, stages: list[Built], registry=None, sink: Built | None = None):
        """Plan ``stages`` for a ``kind`` stream in format ``fmt`` (None: not known yet, so no
        converters can be planned). With ``sink``, add only the converters that sink needs."""
        in_format, steps = fmt, []
        if kind == "audio" and fmt is not None:
            stages = downmix_first(stages, fmt)
        targets = [(b, b.obj.accepts.get(kind), True) for b in stages]
        if sink is not None:
            targets.append((sink, sink.obj.accepts.get(kind), False))
        for built, contract, runs in targets:
            if contract is None:
                continue  # a stage that does not take this kind lets it pass untouched
            if fmt is not None:
                for converter in _converters(kind, fmt, contract, built.label, registry):
                    steps.append(Step(converter, fmt, converter.obj.output_format(fmt)))
                    fmt = steps[-1].out_format
            if runs:
                out = built.obj.output_format(fmt) if fmt is not None else None
                steps.append(Step(built, fmt, out))
                fmt = out
        return cls(kind, in_format, steps)

    async def push(self, frame) -> list:
        return await self.push_all([frame])

    async def push_all(self, frames: list) -> list:
        for step in self.steps:
            frames = await _run(step, frames)
        return frames

    def accepts_frame(self, frame) -> bool:
        """True while frames keep the format this chain was planned for."""
        planned = self.in_format
        if planned is None:
            return False
        fmt = frame.format
        if planned == fmt:
            return True
        # a source may promise fixed frame sizes; single frames do not carry that promise
        return getattr(planned, "frame_size", None) is not None and replace(planned, frame_size=None) == fmt

    async def flush(self) -> list:
        """Drain every stage in order: what one stage flushes still passes the stages after it."""
        out = []
        for index, step in enumerate(self.steps):
            try:
                tail = step.built.obj.flush()
            except LkplugError:
                raise
            except Exception as exc:
                raise PluginError(step.built.describe_failure(exc)) from exc
            for later in self.steps[index + 1 :]:
                tail = await _run(later, tail)
            out += tail
        return out

    def describe(self) -> list[tuple[str, str]]:
        """(label, format after the step) per step, for --explain."""
        rows = []
        for step in self.steps:
            label = step.built.label + ("  [inserted]" if step.built.inserted else "")
            rows.append((label, str(step.out_format) if step.out_format else "decided at run time"))
        return rows


async def _run(step: Step, frames: list) -> list:
    out = []
    process = step.built.obj.process
    try:
        for frame in frames:
            result = await process(frame) if step.is_async else process(frame)
            if result:
                out += result
    except LkplugError:
        raise
    except Exception as exc:
        raise PluginError(step.built.describe_failure(exc)) from exc
    return out


def downmix_first(stages: list[Built], fmt: AudioFormat) -> list[Built]:
    """Move a downmix (``channel_mix``) ahead of a stage that filters every channel alike
    (``per_channel_linear``, e.g. a resampler): the two commute, and the filter then has fewer
    channels to work on, as FFmpeg does with ``-ac 1`` beside a rate change."""
    stages = list(stages)
    channels = fmt.channels
    index = 0
    while index < len(stages) - 1:
        first, then = stages[index].obj, stages[index + 1].obj
        if getattr(first, "per_channel_linear", False) and getattr(then, "channel_mix", False):
            mixed = then.output_format(replace(fmt, channels=channels))
            if mixed is not None and mixed.channels < channels:
                stages[index], stages[index + 1] = stages[index + 1], stages[index]
                continue  # the downmix may move further forward
        if "audio" in first.accepts:
            out = first.output_format(replace(fmt, channels=channels))
            channels = out.channels if out is not None else channels
        index += 1
    return stages


def _converters(kind, fmt, contract, why, registry) -> list[Built]:
    planner = CONVERTER_PLANNERS.get(kind)
    if planner is None:
        return []

    def make(conversion: str, label: str, **params) -> Built:
        entry = registry and registry.converter(conversion)
        if entry is None:
            raise NegotiationError(
                f"{why} needs {label} but no loaded plugin converts {conversion}"
                " (is a plugin disabled with -p no:...?)"
            )
        text = ",".join(f"{k}={v}" for k, v in params.items())
        obj = entry.component.factory(**params)
        return Built(f"{entry.name}:{text}", obj, entry.plugin.provider, inserted=True)

    return planner(fmt, contract, why, make)


def plan_audio_converters(fmt: AudioFormat, contract: AudioContract, why: str, make) -> list[Built]:
    """Downmix before resampling (less to resample), upmix after; sample format, then frame size.
    Channel layouts are converted by whichever plugin converts ``layout`` (libswresample's
    rematrixing, as FFmpeg does), never by a matrix of lkplug's own."""
    rate = pick(contract.rates, fmt.rate)
    layout = pick_layout(fmt.layout, fmt.channels, contract.channels, contract.layouts)
    channels = layout_channels(layout) or fmt.channels
    formats = contract.sample_formats
    sample_format = fmt.sample_format if not formats or fmt.sample_format in formats else formats[0]
    out: list[Built] = []

    def core(obj) -> Built:
        return Built(obj.label, obj, inserted=True)

    def remix() -> Built:
        return make("layout", f"{layout} (stream is {fmt.layout})", channels=layout)

    if layout != fmt.layout and channels <= fmt.channels:
        out.append(remix())
    if rate != fmt.rate:
        out.append(make("rate", f"{rate} Hz (stream is {fmt.rate} Hz)", rate=rate))
    if layout != fmt.layout and channels > fmt.channels:
        out.append(remix())
    if sample_format != fmt.sample_format:
        out.append(core(SampleFormatConverter(sample_format)))
    if contract.frame_ms:
        size = round(rate * contract.frame_ms / 1000)
        if fmt.frame_size != size:
            out.append(core(Rechunker(size)))
    return out


CONVERTER_PLANNERS["audio"] = plan_audio_converters


def plan_video_converters(fmt: VideoFormat, contract: VideoContract, why: str, make) -> list[Built]:
    """A pixel format the stage takes, from whichever plugin converts ``pixel_format``."""
    formats = contract.pixel_formats
    if not formats or fmt.pixel_format in formats:
        return []
    target = formats[0]
    return [make("pixel_format", f"{target} (stream is {fmt.pixel_format})", pixel_format=target)]


CONVERTER_PLANNERS["video"] = plan_video_converters
