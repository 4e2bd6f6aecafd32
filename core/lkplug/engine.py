"""The engine: a source, chains of processors per media kind, and sinks, run on asyncio.

The source runs as its own task feeding a bounded queue (backpressure: a fast file decoder waits for
the chain). Chains are planned when the first frame of a kind arrives (or from the source's probe for
``--explain``) and re-planned if the stream's format changes. Stopping (Ctrl-C) ends the source,
flushes every chain and closes every sink, so outputs hold every processed frame.

The engine keeps the frame contract for every stage: a sink gets only the kinds it accepts; a stage
with a fixed frame size gets exactly that many samples (padding added for the last frame is cut again
after it); ``flush()`` means end of stream, so a format change mid-stream flushes the stages and
carries on with fresh ones; what a stage hands on is checked against what it declared, and any
failure, ``sys.exit()`` and ``KeyboardInterrupt`` included, is reported as that stage's.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chain import PLUGIN_FAILURES, Built, Chain, Running, accepts_of, call_plugin, require
from .components import Component, RunContext
from .errors import LkplugError, ParamError, UsageError
from .frames import is_integer_format
from .paths import check_folder
from .progress import counted
from .registry import Entry, Registry
from .spec import Spec, format_spec, parse_spec
from .waiting import wait_either, wait_event

QUEUE_FRAMES = 8
SHORT_FRAME_MS = 10.0  # a live source's frames when a real-time sink listens (WebRTC's own size)
LONG_FRAME_MS = 100.0  # ... when nothing needs short ones (recording to a file, a null sink)
MAX_PACE_LAG = 0.25  # seconds behind the pace before the pacer stops catching up
_END = object()  # end of the source's frames


def resolve_params(component: Component, spec: Spec) -> dict[str, Any]:
    """Check a spec's parameters against the component's schema; fill in defaults."""
    given = dict(spec.params)
    if spec.value is not None:
        if component.positional is None:
            names = ", ".join(p.name for p in component.params) or "none"
            raise ParamError(f"{component.name} takes no bare value; use key=value (parameters: {names})")
        if component.positional in given:
            raise ParamError(f"{component.name}: {component.positional} is given twice")
        given = {component.positional: spec.value, **given}
    values = {}
    for key, text in given.items():
        param = component.param(key)
        if param is None:
            known = [p.name for p in component.params]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ParamError(
                f"{component.name} has no parameter {key!r}; {hint}"
                f"`lkplug inspect {component.name}` lists them"
            )
        values[key] = param.parse(text, component.name)
    for param in component.params:
        if param.name not in values:
            if param.required:
                raise ParamError(f"{component.name} needs {param.name}= ({param.help or param.type_name})")
            values[param.name] = param.default
    return values


def build(registry: Registry, role: str, spec_text: str) -> Built:
    """Build the runtime object for a spec such as ``gain:db=-6``."""
    spec = parse_spec(spec_text)
    entry = registry.get(role, spec.name)
    return build_entry(entry, spec)


def build_entry(entry: Entry, spec: Spec) -> Built:
    params = resolve_params(entry.component, spec)
    make = functools.partial(entry.component.factory, **params)
    built = Built(format_spec(spec), None, entry.plugin.provider, make=make)
    built.obj = call_plugin(built, make)
    return built


@dataclass
class RunReport:
    seconds: float = 0.0  # media time that left the source
    frames: int = 0
    stopped: bool = False  # ended by stop() (Ctrl-C), not by the source
    wall: float = 0.0
    warnings: list[str] = field(default_factory=list)


class Pipeline:
    """``source -> processors -> sinks``; build it from spec strings or from built objects."""

    def __init__(
        self,
        source: Built,
        processors: Sequence[Built] = (),
        sinks: Sequence[Built] = (),
        registry: Registry | None = None,
        pace: float | None = None,
        context: RunContext | None = None,
        duration: float | None = None,
    ):
        self.source = source
        self.processors = list(processors)
        self.sinks = list(sinks)
        self.registry = registry
        self.pace = pace  # None: as fast as possible; 1.0: real time
        self._pace_origin: float | None = None  # wall time at which media time 0 is due
        self._paced_to = -math.inf  # media time of the latest frame paced
        self.context = context or RunContext()
        self.duration = duration  # stop after this many seconds of media, like ffmpeg's -t
        self._producer: asyncio.Task | None = None
        self._stopping = False
        self._wake = asyncio.Event()  # set by stop(): ends a wait for the pace at once
        self._stages: dict[str, list[Built]] = {}  # per kind: fresh objects after a format change
        self._chains: dict[str, Chain] = {}
        self._tails: dict[tuple[int, str], Chain] = {}
        self._planned: list[Chain] = []  # every chain and tail that ran, for the clipping report
        self._closed: set[int] = set()  # sinks already closed (finalize_now runs on another thread)
        self._close_lock = threading.Lock()
        self._closing = threading.Event()  # the event loop began closing the sinks (_finish)
        self._closed_all = threading.Event()  # ... and ended

    @classmethod
    def from_specs(
        cls,
        source: str,
        processors: Sequence[str] = (),
        sinks: Sequence[str] = (),
        registry: Registry | None = None,
        **options,
    ) -> Pipeline:
        registry = registry or Registry.load()
        return cls(
            build(registry, "source", source),
            [build(registry, "processor", p) for p in processors],
            [build(registry, "sink", s) for s in sinks],
            registry,
            **options,
        )

    @property
    def realtime_sinks(self) -> bool:
        return any(getattr(s.obj, "realtime", False) for s in self.sinks)

    # planning -------------------------------------------------------------------------------

    def _bind(self) -> None:
        stages = [*self.processors, *self.sinks]
        self.context.kinds = frozenset(kind for built in stages for kind in accepts_of(built.obj))
        self.context.pace = self.pace
        self.context.duration = self.duration
        self.context.frame_ms = self._live_frame_ms()
        self.context.live = bool(getattr(self.source.obj, "live", False))
        require(self.source, "source", "probe", "frames")
        for built in self.processors:
            require(built, "processor", "process")
        for built in self.sinks:
            require(built, "sink", "write")
        for built in [self.source, *self.processors, *self.sinks]:
            bind = getattr(built.obj, "bind", None)
            if bind is not None:
                call_plugin(built, bind, self.context)
        self._refuse_overwriting_the_input()

    def _live_frame_ms(self) -> float:
        """The frame length a live source should deliver: what the stage that needs the shortest
        frames declares, 10 ms beside a real-time sink (a relay: every ms of batching is latency),
        100 ms otherwise."""
        needs = [
            contract.frame_ms
            for built in [*self.processors, *self.sinks]
            for contract in accepts_of(built.obj).values()
            if getattr(contract, "frame_ms", None)
        ]
        if self.realtime_sinks:
            needs.append(SHORT_FRAME_MS)
        return min(needs, default=LONG_FRAME_MS)

    def _refuse_overwriting_the_input(self) -> None:
        """A sink whose output is the source's input would destroy it (ffmpeg refuses too): stop
        before anything is opened. Components name their files in ``reads`` and ``writes``."""
        reads = [path for path in getattr(self.source.obj, "reads", ()) if os.path.exists(path)]
        for sink in self.sinks:
            for path in getattr(sink.obj, "writes", ()):
                if any(os.path.exists(path) and os.path.samefile(path, read) for read in reads):
                    raise UsageError(f"{sink.label}: {path} is also the input; write to another file")
        refuse_shared_outputs(self.sinks)

    def _check_outputs(self) -> None:
        """Every sink's files (``writes``) can be written, before any sink starts: a sink that
        publishes to a room joins it in ``start``, and a file sink after it would otherwise be found
        unwritable only once the room was joined."""
        for sink in self.sinks:
            for path in getattr(sink.obj, "writes", ()):
                check_folder(Path(path))

    def _plan(self, kind: str, fmt: Any, probed: bool = False) -> Chain:
        """The chain for ``kind`` in ``fmt``, and each sink's converters after it. ``probed``: ``fmt``
        is what the source's ``probe`` gave, before any frame (it may take on a downmix then)."""
        stages = self._stages.setdefault(kind, list(self.processors))
        chain = Chain.plan(kind, fmt, stages, self.registry)
        kept = self._plan_tails(kind, chain)
        if kind == "audio":
            # one chain feeds every sink: a downmix in it is scaled for an integer sink (none clips)
            end = next((name for name in kept if is_integer_format(name)), kept[0] if kept else None)
            if end is None:
                chain.settle(None)
            else:
                settled = Chain.plan(kind, fmt, stages, self.registry, kept=end)
                if settled.out_format != chain.out_format:  # a remix of s16 kept as float gives flt
                    self._plan_tails(kind, settled)
                chain = settled
            mixes_into = getattr(self.source.obj, "mixes_into", None)
            if mixes_into is not None:  # a fan-in: its streams' downmixes are scaled for the same end
                call_plugin(self.source, mixes_into, chain.kept_format)
            mixed = self._mixed_by_source(chain) if probed else None
            if mixed is not None:  # the stage passes the source's mix on: planned again from it
                return self._plan(kind, mixed)
        self._chains[kind] = chain
        self._planned += [chain, *(tail for (_, of), tail in self._tails.items() if of == kind)]
        return chain

    def _mixed_by_source(self, chain: Chain):
        """The format the source gives once it takes on the downmix that comes first in ``chain``
        (``Source.take_channel_mix``), or None: it does not, or the chain does not start with one."""
        take = getattr(self.source.obj, "take_channel_mix", None)
        if take is None or not chain.steps or chain.in_format is None:
            return None
        first = chain.steps[0]
        if not getattr(first.built.obj, "channel_mix", False) or first.out_format is None:
            return None
        if first.out_format.channels >= chain.in_format.channels:
            return None
        return call_plugin(self.source, take, first.built.obj, chain.in_format)

    def _plan_tails(self, kind: str, chain: Chain) -> list[str | None]:
        """Plan each sink's converters after ``chain``; the sample format each one keeps audio in."""
        kept: list[str | None] = []
        for index, sink in enumerate(self.sinks):
            if kind in accepts_of(sink.obj):  # a sink gets only the kinds it accepts
                tail = Chain.plan(kind, chain.out_format, [], self.registry, sink)
                self._tails[(index, kind)] = tail
                kept.append(tail.kept_format)
        return kept

    def _check_sinks(self, formats: dict) -> None:
        """Every sink must take some kind the source gives (else it would silently get nothing)."""
        if not formats:
            return  # the source cannot say before frames flow
        for sink in self.sinks:
            if not set(formats) & set(accepts_of(sink.obj)):
                takes = ", ".join(accepts_of(sink.obj)) or "nothing"
                raise UsageError(
                    f"{sink.label} takes none of what {self.source.label} gives "
                    f"({', '.join(formats)}); it takes {takes}"
                )

    def explain(self) -> str:
        """The negotiated plan, converters included, without running anything."""
        self._bind()
        formats = call_plugin(self.source, self.source.obj.probe)
        self._check_sinks(formats)
        lines = [f"source  {self.source.label}  ({self.source.provider})"]
        for kind, fmt in formats.items():
            lines.append(f"  {kind}: {fmt if fmt is not None else 'format known once frames flow'}")
            chain = self._plan(kind, fmt, probed=True)
            if chain.in_format != fmt:  # the source took on the chain's first downmix
                lines.append(f"    -> {'mixed in the source':<40} {chain.in_format}")
            for label, out in chain.describe():
                lines.append(f"    -> {label:<40} {out}")
        for index, sink in enumerate(self.sinks):
            lines.append(f"sink    {sink.label}  ({sink.provider})")
            for kind in formats:
                if (index, kind) not in self._tails:
                    lines.append(f"    (takes no {kind})")
                    continue
                for label, out in self._tails[(index, kind)].describe():
                    lines.append(f"    -> {label:<40} {out}")
        if self.pace:
            lines.append(f"pace    {self.pace:g}x real time")
        if self.duration is not None:
            lines.append(f"stop    after {self.duration:g} s of media")
        return "\n".join(lines)

    # running --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to end: the source stops, chains flush, sinks close. Safe from a signal."""
        self._stopping = True
        self._wake.set()
        if self._producer is not None:
            self._producer.cancel()

    def drop_backlog(self) -> None:
        """A second Ctrl-C: every sink closes with what it has written, dropping what waits in it (an
        encoder's delayed pictures: x264 draining a 1280x720 backlog takes seconds). Safe from any
        thread; sinks without a backlog have nothing to drop."""
        for sink in self.sinks:
            drop = getattr(sink.obj, "drop_backlog", None)
            if drop is not None:
                drop()

    def finalize_now(self, wait: float = 0.0) -> list[str]:
        """Close every sink not yet closed, from any thread, whatever the event loop is doing: the
        last resort of a second Ctrl-C while a stage blocks. A sink the event loop is closing already
        is waited for, up to ``wait`` seconds. Returns the labels closed here."""
        done = []
        for index, sink in enumerate(self.sinks):
            close = getattr(sink.obj, "close", None)
            if close is None or inspect.iscoroutinefunction(close) or not self._claim(index):
                continue
            try:
                close()
                done.append(sink.label)
            except BaseException:  # noqa: BLE001 - the process is about to end; close the others
                pass
        if self._closing.is_set():
            self._closed_all.wait(wait)  # the loop is closing a sink: its trailer is being written
        return done

    def _claim(self, index: int) -> bool:
        """True once per sink: whoever claims it closes it."""
        with self._close_lock:
            if index in self._closed:
                return False
            self._closed.add(index)
            return True

    async def run(self, on_progress: Callable[[float], None] | None = None) -> RunReport:
        report = RunReport()
        started = time.monotonic()
        queue: asyncio.Queue = asyncio.Queue(QUEUE_FRAMES)
        error: BaseException | None = None
        try:
            self._bind()
            formats = call_plugin(self.source, self.source.obj.probe)
            self._check_sinks(formats)
            for kind, fmt in formats.items():
                self._plan(kind, fmt, probed=True)
            self._check_outputs()
            for index, sink in enumerate(self.sinks):
                start = getattr(sink.obj, "start", None)
                if start is not None:
                    tails = {
                        k: self._tails[(index, k)].out_format for k in formats if (index, k) in self._tails
                    }
                    await self._unless_stopped(_call(sink, start, tails))
            seen: set[str] = set()  # kinds that arrived, and those that reached --duration
            finished: set[str] = set()
            self._producer = asyncio.create_task(self._produce(queue))
            # a task cancelled before its first step (a stop() right after it was created) never runs
            # its finally: the end marker must come from here, or the loop below waits for it forever
            self._producer.add_done_callback(lambda _: _put_end(queue))
            if self._stopping:  # stop() came before the task existed
                self._producer.cancel()
            while not (queue.empty() and self._producer.done()):
                frame = await queue.get()
                if frame is _END or self._stopping:
                    break
                if self.duration is not None:
                    seen.add(frame.kind)
                    cut = frame.until(self.duration)
                    if cut is None:  # long enough: end as if the source had ended, once every
                        finished.add(frame.kind)  # kind is (files interleave: one gets there first)
                        if finished >= seen:
                            self._producer.cancel()
                            break
                        continue
                    frame = cut
                if self.pace:
                    await self._wait_for_pace(frame)
                    if self._stopping:
                        break  # stopped while waiting: this frame was not due yet
                await self._handle(frame)
                report.frames += 1
                report.seconds = max(report.seconds, frame.time + getattr(frame, "duration", 0.0))
                if on_progress is not None:
                    on_progress(report.seconds)
            await asyncio.wait({self._producer})  # it has put its last frame; let it finish
            if not self._producer.cancelled():
                self._producer.result()  # a source error surfaces here
            for kind in list(self._chains):
                await self._deliver(kind, await self._chains[kind].flush())
        except BaseException as exc:
            error = exc
            raise
        finally:
            if self._producer is not None:
                self._producer.cancel()
                await asyncio.gather(self._producer, return_exceptions=True)
            await self._finish(error)
            report.stopped = self._stopping
            report.wall = time.monotonic() - started
            report.warnings += list(getattr(self.source.obj, "warnings", ()))
            for sink in self.sinks:  # read once closed: a sink may only know then
                report.warnings += list(getattr(sink.obj, "warnings", ()))
            report.warnings += self._clipping()
        return report

    def _clipping(self) -> list[str]:
        """One line per stage that clipped samples (``clipped``: a count it keeps), like SoX's
        "clipped N samples"; a conversion the engine inserted is named by the stage before it."""
        lines, seen = [], set()
        for chain in self._planned:
            main = self._chains.get(chain.kind)
            upstream = [s.built.label for s in (main.steps if main else []) if not s.built.inserted]
            for index, step in enumerate(chain.steps):
                built = step.built
                clipped = getattr(built.obj, "clipped", 0)
                if not clipped or id(built.obj) in seen:
                    continue
                seen.add(id(built.obj))
                before = [s.built.label for s in chain.steps[:index] if not s.built.inserted]
                cause = (before or upstream or [self.source.label])[-1]
                where = f"{built.label} (after {cause})" if built.inserted else built.label
                lines.append(f"{where} clipped {counted(clipped, 'sample')}; lower the level before it")
        for sink in self.sinks:
            clipped = getattr(sink.obj, "clipped", 0)
            if clipped:
                lines.append(f"{sink.label} clipped {counted(clipped, 'sample')}; lower the level before it")
        return lines

    async def _produce(self, queue: asyncio.Queue) -> None:
        source = self.source
        try:
            async for frame in source.obj.frames():
                await queue.put(frame)
        except (LkplugError, asyncio.CancelledError):
            raise
        except PLUGIN_FAILURES as exc:
            raise source.failure(exc) from exc

    async def _unless_stopped(self, work) -> None:
        """Await ``work`` (a sink's start, which may wait for a listener as long as it was told) unless
        stop() comes first: then it is cancelled, and the run ends as a stopped run does."""
        task = asyncio.ensure_future(work)
        try:
            await wait_either(task, self._wake)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if not task.cancelled():
            task.result()

    async def _wait_for_pace(self, frame) -> None:
        now = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = now - frame.time / self.pace
        if frame.time < self._paced_to:
            # older than a frame already paced (a video decoder's last pictures, which it gives only at
            # the end of the file, after the audio beside them): due already, and no sign that the
            # run fell behind. Taken as one, it moved the pace on by the audio's lead (1.9 s of
            # silence before the last audio of a file whose video ends 2 s before its audio)
            return
        self._paced_to = frame.time
        delay = self._pace_origin + frame.time / self.pace - now
        if delay < -MAX_PACE_LAG:
            # far behind (a sink stalled: joining a room, waiting for a listener): go on at the pace
            # from here rather than catch up in a burst the listener would not hear
            self._pace_origin -= delay
        elif delay > 0:
            await wait_event(self._wake, delay)  # stop() ends the wait at once

    async def _handle(self, frame) -> None:
        kind = frame.kind
        chain = self._chains.get(kind)
        if chain is None or not chain.accepts_frame(frame):
            if chain is not None and chain.used:
                # the format changed mid-stream: end that stream (flush means end of stream) and
                # go on with fresh stages, so no state leaks from one format into the other
                await self._deliver(kind, await chain.flush())
                self._stages[kind] = [
                    b.fresh(self.context) if kind in accepts_of(b.obj) else b for b in self._stages[kind]
                ]
            chain = self._plan(kind, frame.format)
        await self._deliver(kind, await chain.push(frame))

    async def _deliver(self, kind: str, frames: list) -> None:
        if not frames:
            return
        for index, sink in enumerate(self.sinks):
            tail = self._tails.get((index, kind))
            if tail is None:
                continue  # not a kind this sink accepts
            out = await tail.push_all(frames) if tail.steps else frames
            for frame in out:
                await _call(sink, sink.obj.write, frame)

    async def _finish(self, error: BaseException | None) -> None:
        """Flush sink converters and close every sink, whatever happened before."""
        for (index, _kind), tail in self._tails.items():
            if error is None and tail.steps:
                sink = self.sinks[index]
                for frame in await tail.flush():
                    await _call(sink, sink.obj.write, frame)
        first_failure = None
        self._closing.set()
        try:
            first_failure = await self._close_sinks(error)
        finally:
            self._closed_all.set()
        aclose = getattr(self.source.obj, "aclose", None)
        try:
            if aclose is not None:
                await _call(self.source, aclose)
        except Exception as exc:
            first_failure = first_failure or exc
        if first_failure is not None and error is None:
            raise first_failure

    async def _close_sinks(self, error: BaseException | None) -> Exception | None:
        """End (when nothing failed) and close every sink the signal watcher has not closed; the
        first failure is returned, after every sink had its turn."""
        first_failure = None
        for index, sink in enumerate(self.sinks):
            if not self._claim(index):
                continue  # the signal watcher closed it already
            end = getattr(sink.obj, "end", None)
            if error is None and end is not None:
                try:
                    await _call(sink, end)
                except Exception as exc:
                    first_failure = first_failure or exc
            close = getattr(sink.obj, "close", None)
            if close is None:
                continue
            try:
                await _call(sink, close)
            except Exception as exc:
                first_failure = first_failure or exc
        return first_failure


def refuse_shared_outputs(sinks: Sequence[Built]) -> None:
    """Raise UsageError when two sinks write one file (``writes``, compared by real path): one of
    them would be lost, or the second rename would fail at the end of a recording. Sinks are told
    apart by position: ``--sink wav:x.wav --sink wav:x.wav`` has two sinks with one label."""
    written: dict[str, Built] = {}  # real path -> the sink writing it
    for sink in sinks:
        for path in getattr(sink.obj, "writes", ()):
            other = written.setdefault(os.path.realpath(path), sink)
            if other is not sink:
                same = other.label == sink.label
                both = f"the two sinks {sink.label}" if same else f"{sink.label} and {other.label}"
                raise UsageError(f"{both} both write {path}; give each its own file")


def _put_end(queue: asyncio.Queue) -> None:
    try:
        queue.put_nowait(_END)
    except asyncio.QueueFull:
        pass  # the consumer is not waiting: it drains the queue, then sees that the producer is done


async def _maybe_await(result):
    return await result if inspect.isawaitable(result) else result


async def _call(built: Built, method, *args):
    Running.built = built
    try:
        result = await _maybe_await(method(*args))
    except LkplugError:
        raise
    except PLUGIN_FAILURES as exc:
        raise built.failure(exc) from exc
    Running.built = None
    return result
