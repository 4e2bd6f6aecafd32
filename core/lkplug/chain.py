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
from .frames import AudioFormat, AudioFrame, VideoFormat, VideoFrame, layout_channels

#: what a stage that declares no ``accepts`` takes (as ``lkplug.Stage`` does)
DEFAULT_ACCEPTS = {"audio": AudioContract()}
#: what a plugin may raise that is still only that plugin's failure, never the run's end
PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt)
FRAME_TYPES = {"audio": AudioFrame, "video": VideoFrame}


def accepts_of(obj) -> Any:
    """A stage's ``accepts``: components may match the documented shape without lkplug's classes."""
    return getattr(obj, "accepts", DEFAULT_ACCEPTS)


def output_format_of(obj, fmt):
    method = getattr(obj, "output_format", None)
    return fmt if method is None else method(fmt)


class Running:
    """The stage the engine is inside right now (for a signal handler's "still running X")."""

    built: Built | None = None


@dataclass
class Built:
    """A component object with the spec it was built from and who provides it."""

    label: str
    obj: Any
    provider: str = "lkplug"
    inserted: bool = False  # put in by the engine, not asked for by the user
    #: builds a fresh object from the same spec (for a new stream after a format change)
    make: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def who(self) -> str:
        return f"{self.label} (from {self.provider})"

    def describe_failure(self, exc: BaseException) -> str:
        if isinstance(exc, SystemExit):  # sys.exit() in a plugin ends nothing but that plugin
            code = "" if exc.code is None else repr(exc.code)
            return f"{self.who} failed: SystemExit: it called sys.exit({code})"
        text = str(exc)
        return f"{self.who} failed: {type(exc).__name__}" + (f": {text}" if text else "")

    def failure(self, exc: BaseException) -> PluginError:
        error = PluginError(self.describe_failure(exc))
        error.__cause__ = exc
        return error

    def fresh(self, context=None) -> Built:
        """This stage for a new stream: ``reset()`` if the object has one, else a new object from
        its spec. Raises PluginError when neither is possible."""
        reset = getattr(self.obj, "reset", None)
        if reset is not None:
            call_plugin(self, reset)
            return self
        if self.make is None:
            raise PluginError(
                f"{self.who} cannot start a new stream after a format change: build it from a spec"
                " or give it a reset() method"
            )
        obj = call_plugin(self, self.make)
        bind = getattr(obj, "bind", None)
        if bind is not None and context is not None:
            call_plugin(self, bind, context)
        return replace(self, obj=obj)


def require(built: Built, role: str, *methods: str) -> None:
    """PluginError naming ``built`` unless its object has ``methods`` (the rest are optional)."""
    missing = [name for name in methods if not callable(getattr(built.obj, name, None))]
    if missing:
        needs = ", ".join(f"{name}()" for name in missing)
        raise PluginError(f"{built.who} is not a {role}: it has no {needs} (see lkplug.{role.title()})")


def call_plugin(built: Built, method, *args):
    """Call a plugin's method; whatever it raises becomes a PluginError naming it."""
    try:
        return method(*args)
    except LkplugError:
        raise
    except PLUGIN_FAILURES as exc:
        raise built.failure(exc) from exc


@dataclass
class Step:
    built: Built
    in_format: Any
    out_format: Any
    is_async: bool = field(init=False)

    def __post_init__(self):
        require(self.built, "processor", "process")
        self.is_async = inspect.iscoroutinefunction(self.built.obj.process)

    def contract_error(self, kind: str, item) -> str | None:
        """Why ``item`` is not a frame of ``kind`` in the format this step declared, or None."""
        frame_type = FRAME_TYPES.get(kind)
        if getattr(item, "kind", None) != kind or (frame_type and not isinstance(item, frame_type)):
            return f"handed on {item!r:.60} ({type(item).__name__}) where a {kind} frame was due"
        out = self.out_format
        if out is None:
            return None
        if kind == "audio":
            if (item.sample_rate, item.data.shape[1], item.sample_format) != (
                out.rate,
                out.channels,
                out.sample_format,
            ):
                return f"handed on {item.format} where its output_format promised {out}"
        elif kind == "video" and item.format != out:
            return f"handed on {item.format} where its output_format promised {out}"
        return None


# kind -> function(fmt, contract, why, make_converter) -> list[Built]
CONVERTER_PLANNERS: dict[str, Callable[..., list[Built]]] = {}


class Chain:
    """Runs frames of one kind through a planned list of steps."""

    def __init__(self, kind: str, in_format: Any, steps: list[Step]):
        self.kind = kind
        self.in_format = in_format
        self.steps = steps
        self.out_format = steps[-1].out_format if steps else in_format
        self.used = False  # a frame went in: a format change must end this chain's stream
        self.is_async = any(step.is_async for step in steps)
        #: the sample format audio entering this chain is next kept in (see ``settle``)
        self.kept_format: str | None = None

    @classmethod
    def plan(
        cls,
        kind: str,
        fmt: Any,
        stages: list[Built],
        registry=None,
        sink: Built | None = None,
        kept: str | None = None,
    ):
        """Plan ``stages`` for a ``kind`` stream in format ``fmt`` (None: not known yet, so no
        converters can be planned). With ``sink``, add only the converters that sink needs. An
        audio chain is then settled (see ``settle``) for ``kept``, the sample format its output is
        next kept in, else for what ``sink`` stores."""
        chain = cls._planned(kind, fmt, stages, registry, sink)
        if kind != "audio":
            return chain
        if kept is None and sink is not None and fmt is not None:
            kept = stored_sample_format(sink, chain.out_format)
        if kept is None:
            return chain
        told = chain.settle(kept)
        if chain.follows_settling():
            # a stage's output format follows what it was told (a remix of s16 kept as float mixes
            # into flt): plan again, each channel mix told first, so the steps after it fit
            chain = cls._planned(kind, fmt, stages, registry, sink, told)
            chain.settle(kept)
        return chain

    @classmethod
    def _planned(cls, kind, fmt, stages, registry, sink, told: list | None = None):
        """The steps for ``stages`` (and ``sink``'s converters); ``told``: the sample format each
        channel mix, in order, was told by an earlier ``settle`` (see ``Chain.plan``)."""
        in_format, steps = fmt, []
        told = list(told or [])
        if kind == "audio" and fmt is not None:
            stages = downmix_first(stages, fmt)
        targets = [(b, accepts_of(b.obj).get(kind), True) for b in stages]
        if sink is not None:
            targets.append((sink, accepts_of(sink.obj).get(kind), False))

        def add(built: Built, given):
            """Append ``built`` given ``given``; the format after it."""
            if getattr(built.obj, "channel_mix", False) and told:
                kept, mixes_into = told.pop(0), getattr(built.obj, "mixes_into", None)
                if kept is not None and mixes_into is not None:
                    call_plugin(built, mixes_into, kept)
            obj = built.obj
            if isinstance(obj, SampleFormatConverter) and given.sample_format == obj.sample_format:
                return given  # planned from the stream's format; a remix before it already gave flt
            out = call_plugin(built, output_format_of, obj, given) if given is not None else None
            steps.append(Step(built, given, carried(obj, given, out)))
            return steps[-1].out_format

        for built, contract, runs in targets:
            if contract is None:
                continue  # a stage that does not take this kind lets it pass untouched
            if fmt is not None:
                for converter in _converters(kind, fmt, contract, built.label, registry):
                    fmt = add(converter, fmt)
            if runs:
                fmt = add(built, fmt)
        return cls(kind, in_format, steps)

    def settle(self, end: str | None) -> list[str | None]:
        """Tell each channel-mixing stage (``channel_mix`` with a ``mixes_into`` method) the sample
        format its output is next kept in, which decides FFmpeg's scaling of a downmix: the format
        the next stage works in (``works_in``, as a gain's flt: FFmpeg's volume filter takes float;
        else the one it is given, as in an ``-af`` filter chain, where that stage's input keeps the
        format), else ``end``, what the sink stores (as ``-ac``; None: unknown). Converters the
        planner inserted and stages that commute with a channel mix (``per_channel_linear``: a
        resampler, an attenuating gain) decide nothing: FFmpeg would convert in the same step.
        Returns what each channel mix was told, in the chain's order (None: nothing)."""
        after, told = end, []
        for step in reversed(self.steps):
            obj = step.built.obj
            if getattr(obj, "channel_mix", False):
                mixes_into = getattr(obj, "mixes_into", None)
                told.append(after if mixes_into is not None else None)
                if mixes_into is not None and after is not None:
                    call_plugin(step.built, mixes_into, after)
            passes = step.built.inserted or getattr(obj, "per_channel_linear", False)
            if not passes and step.in_format is not None:
                given = step.in_format.ffmpeg_format or step.in_format.sample_format
                after = getattr(obj, "works_in", None) or given
        self.kept_format = after
        return told[::-1]

    def follows_settling(self) -> bool:
        """True when a step would now give another sample format than planned (see ``Chain.plan``)."""
        for step in self.steps:
            if step.in_format is None or step.out_format is None:
                continue
            out = call_plugin(step.built, output_format_of, step.built.obj, step.in_format)
            if getattr(out, "sample_format", None) != step.out_format.sample_format:
                return True
        return False

    async def push(self, frame) -> list:
        return await self.push_all([frame])

    async def push_all(self, frames: list) -> list:
        self.used = True
        for step in self.steps:
            frames = await _run(step, frames, self.kind)
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
        """End of stream: drain every stage in order, what one stage flushes passing the stages after
        it. Silence a rechunker added to complete the last frame is cut again after the stage that
        needed it, so a stage that keeps length keeps the stream's length."""
        carry: list = []
        padding: tuple[int, int] | None = None  # (samples, rate) of silence the step before added
        for step in self.steps:
            carry = await _run(step, carry, self.kind)
            flush = getattr(step.built.obj, "flush", None)
            if flush is not None:
                carry += _checked(step, call_plugin(step.built, flush), self.kind, "flush()")
            if padding is not None:
                carry = _trim_end(carry, padding)
            obj = step.built.obj
            padding = (obj.padding, obj.rate) if isinstance(obj, Rechunker) and obj.padding else None
        return carry

    def describe(self) -> list[tuple[str, str]]:
        """(label, format after the step) per step, for --explain."""
        rows = []
        for step in self.steps:
            label = step.built.label + ("  [inserted]" if step.built.inserted else "")
            rows.append((label, str(step.out_format) if step.out_format else "decided at run time"))
        return rows


async def _run(step: Step, frames: list, kind: str) -> list:
    out = []
    process = step.built.obj.process
    Running.built = step.built
    try:
        for frame in frames:
            result = await process(frame) if step.is_async else process(frame)
            out += _checked(step, result, kind, "process()")
    except LkplugError:
        raise
    except PLUGIN_FAILURES as exc:
        raise step.built.failure(exc) from exc
    Running.built = None
    return out


def _checked(step: Step, result, kind: str, method: str) -> list:
    """``result`` if it is a list of frames as ``step`` declared; else a PluginError naming it."""
    if type(result) is not list:
        if not isinstance(result, (list, tuple)):
            raise PluginError(
                f"{step.built.who} broke the frame contract: {method} returned {result!r:.60},"
                " not a list of frames (return [] for none)"
            )
        result = list(result)
    for item in result:
        error = step.contract_error(kind, item)
        if error is not None:
            raise PluginError(f"{step.built.who} broke the frame contract: {method} {error}")
    return result


def _trim_end(frames: list, padding: tuple[int, int]) -> list:
    """Cut ``padding`` (samples, at rate) from the end of a list of audio frames, at their rate."""
    samples, rate = padding
    out = list(frames)
    while out and samples > 0:
        last = out[-1]
        cut = round(samples * last.sample_rate / rate)
        if cut >= last.samples:
            out.pop()
            samples -= round(last.samples * rate / last.sample_rate)
            continue
        out[-1] = last.replace(data=last.data[: last.samples - cut])
        break
    return out


def carried(obj, given, out):
    """``out``, a stage's output format, with the sample format the ffmpeg CLI would hold there
    (``AudioFormat.ffmpeg_format``): the one the stage works in (``works_in``: a gain's flt), else
    ``given``'s while the stage keeps lkplug's sample format (a remix, a resampler, a converter to
    the same format: FFmpeg converts once, from the decoder's format), else lkplug's own."""
    if not isinstance(out, AudioFormat) or not isinstance(given, AudioFormat):
        return out
    held = getattr(obj, "works_in", None)
    if held is None and out.sample_format == given.sample_format:
        held = given.ffmpeg_format
    return replace(out, ffmpeg_format=held or "")


def stored_sample_format(sink: Built, fmt: AudioFormat) -> str:
    """The sample format (FFmpeg's name) ``sink`` keeps audio arriving as ``fmt`` in: its
    ``stored_sample_format(fmt)`` if it has one (an encoder's format, a WAV subtype), else ``fmt``'s."""
    method = getattr(sink.obj, "stored_sample_format", None)
    return fmt.sample_format if method is None else call_plugin(sink, method, fmt)


def downmix_first(stages: list[Built], fmt: AudioFormat) -> list[Built]:
    """Move a downmix (``channel_mix``) ahead of a stage that filters every channel alike
    (``per_channel_linear``, e.g. a resampler): the two commute, and the filter then has fewer
    channels to work on, as FFmpeg does with ``-ac 1`` beside a rate change."""
    stages = list(stages)
    moved = True
    while moved:  # after a move, look again from the start: the downmix may move further forward
        moved = False
        channels = fmt.channels
        for index in range(len(stages) - 1):
            first, then = stages[index].obj, stages[index + 1].obj
            if getattr(first, "per_channel_linear", False) and getattr(then, "channel_mix", False):
                mixed = output_format_of(then, replace(fmt, channels=channels))
                if mixed is not None and mixed.channels < channels:
                    stages[index], stages[index + 1] = stages[index + 1], stages[index]
                    moved = True
                    break
            if "audio" in accepts_of(first):
                out = output_format_of(first, replace(fmt, channels=channels))
                channels = out.channels if out is not None else channels
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
        # always: a declared frame size is no proof (a source's short last frame, -t, a stage that
        # regroups samples but inherits output_format); on exact frames the rechunker passes them on
        out.append(core(Rechunker(round(rate * contract.frame_ms / 1000))))
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
