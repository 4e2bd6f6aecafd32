"""Fan-in: many streams (several ``--source`` options, or a source that stands for many such as
``track:*``) feed ONE chain through a processor that ``fans_in`` (``mix``).

Each stream is converted to the mix's contract by the planner's usual converters (soxr for the rate,
libswresample for the layout, the sample format) and placed on one timeline:

- files by their timestamps, plus ``offset=`` seconds given on their spec (``file:b.wav,offset=1.5``);
- live tracks by when they arrive: a stream's first frame is placed at its arrival time since the
  mix began (the first frame of any stream), the frames after it by their own timestamps, so the
  SDK's 10 ms frames stay contiguous; a stream that comes back after a gap (a participant who left
  and returned, a re-subscribed track) continues at its arrival time, the gap left silent.

The mixed stream is then the source of an ordinary :class:`Pipeline` (the processors after ``mix``,
the sinks), so ``-t``, pacing, converters, Ctrl-C and the clipping report work as for one stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections import deque
from collections.abc import Sequence

import numpy as np

from .chain import Built, Chain, call_plugin, require
from .components import Param, RunContext, Source
from .engine import Pipeline, build, build_entry
from .errors import LkplugError, UsageError
from .frames import AudioFrame
from .registry import Registry
from .spec import Spec, format_spec, parse_spec
from .templates import fill
from .waiting import wait_event

#: live streams: how long the mix waits for a block's frames before it is written without them (a
#: stream whose frames come later than that, after a gap or a stall, goes on from where it arrived)
LIVE_LATENCY = 0.3
#: live streams: when no stream placed anything for this long past the clock, the mix goes on in real
#: time without them (everyone reconnecting); a shorter stall of lkplug itself only delays the mix
LIVE_STALL = 1.0
#: files: how far a stream may decode ahead of the mix, in seconds
FILE_AHEAD = 2.0
FILE_BLOCK = 0.1  # seconds per mixed frame from files
HINT_AFTER = 10.0  # live: seconds with streams found but none recorded before saying who is there
OFFSET = Param("offset", float, 0.0, "seconds to shift this stream later on the mix's timeline", min=0.0)


def fans_in(registry: Registry, spec_text: str) -> bool:
    """Is the processor ``spec_text`` names one that combines streams (``mix``)?"""
    factory = registry.get("processor", parse_spec(spec_text).name).component.factory
    return bool(getattr(factory, "fans_in", False))


class _Wake:
    """An event that any number of waiters can wait for again after it fired."""

    def __init__(self):
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None = None) -> None:
        await wait_event(self._event, timeout)  # a cancellation is never swallowed (3.11 wait_for)


@dataclasses.dataclass
class Stream:
    """One input of the mix: its source, converters and what it has placed on the timeline."""

    name: str
    built: Built
    channel: int | None
    shift: int | None = None  # timeline position of the stream's timestamp 0, in output samples
    chunks: deque = dataclasses.field(default_factory=deque)  # (position, mono float32)
    end: int | None = None  # timeline position where what it placed ends
    done: bool = False
    late: int = 0  # samples that came after the mix had written their place
    resumed: int = 0  # times it went on later than its own timestamps said (gaps, stalls)
    task: asyncio.Task | None = None

    def place(self, position: int, data: np.ndarray) -> None:
        self.chunks.append((position, data))
        self.end = max(self.end or 0, position + len(data))

    def read(self, position: int, samples: int) -> np.ndarray:
        """Samples [position, position + samples) of this stream, silence where it has none."""
        out = np.zeros(samples, np.float32)
        stop = position + samples
        kept = deque()
        for start, data in self.chunks:
            end = start + len(data)
            if end <= position:
                self.late += len(data)  # its place was written already
                continue
            low, high = max(start, position), min(end, stop)
            if low < high:
                out[low - position : high - position] = data[low - start : high - start]
            if end > stop:
                kept.append((start, data))
        self.chunks = kept
        return out


class MixSource(Source):
    """The mixed stream: runs the streams' sources, places their frames and mixes them block by
    block. ``sources`` are (built source, offset in seconds); a source that ``fans_out`` stands for
    every stream it finds."""

    fans_out = False

    def __init__(self, sources: Sequence[tuple[Built, float]], mix: Built, registry: Registry | None):
        self.sources = list(sources)
        self.mix = mix
        self.registry = registry
        self.live = any(getattr(b.obj, "live", False) for b, _ in self.sources)
        if self.live and not all(getattr(b.obj, "live", False) for b, _ in self.sources):
            raise UsageError("mix takes room tracks or files, not both in one run")
        finite = sum(1 for b, _ in self.sources if not getattr(b.obj, "fans_out", False))
        if finite == len(self.sources):
            call_plugin(mix, getattr(mix.obj, "inputs_known", lambda n: None), finite)
        self.format = call_plugin(mix, mix.obj.output_format, None)
        self.reads = tuple(path for b, _ in self.sources for path in getattr(b.obj, "reads", ()))
        self.rate = self.format.rate
        self.streams: list[Stream] = []
        self.context = RunContext()
        self._tasks: list[asyncio.Task] = []
        self._origin: float | None = None  # loop time of timeline position 0 (live)
        self._data = _Wake()  # a stream placed something or ended
        self._mixed = _Wake()  # the mix moved on (a file stream ahead of it may go on)
        self._finders = 0  # fan-out sources still looking for streams
        self._kept: str | None = None  # the sample format the mixed audio is next kept in

    def mixes_into(self, sample_format: str | None) -> None:
        """The engine's word: the mixed audio is next kept in ``sample_format``. A stream's downmix
        is scaled by it, as ``ffmpeg -ac`` scales by its output's format: the mix only places and
        adds what it is given."""
        self._kept = sample_format

    def bind(self, context: RunContext) -> None:
        # the streams give audio only: a file source need not decode its video
        self.context = dataclasses.replace(context, kinds=frozenset({"audio"}))
        for built, _ in self.sources:
            if getattr(built.obj, "fans_out", False):
                require(built, "source", "instances")
            else:
                require(built, "source", "probe", "frames")
            bind = getattr(built.obj, "bind", None)
            if bind is not None:
                call_plugin(built, bind, self.context)

    def probe(self) -> dict:
        for built, _ in self.sources:
            gives = call_plugin(built, built.obj.probe)
            if gives and "audio" not in gives:  # its streams would be skipped: the mix would wait forever
                raise UsageError(
                    f"{self.mix.label} takes none of what {built.label} gives ({', '.join(gives)}); "
                    "it mixes audio (e.g. track:*/microphone)"
                )
        return {"audio": self.format}

    def describe_inputs(self) -> list[str]:
        """For --explain: each source and the converters that bring it to the mix's format."""
        lines = []
        for built, offset in self.sources:
            shift = f", offset {offset:g} s" if offset else ""
            lines.append(f"input   {built.label}  ({built.provider}{shift})")
            if getattr(built.obj, "fans_out", False):
                lines.append("  every stream it finds, converted as it comes")
                continue
            fmt = call_plugin(built, built.obj.probe).get("audio")
            if fmt is None:
                lines.append("  audio: format known once frames flow")
                continue
            lines.append(f"  audio: {fmt}")
            for label, out in Chain.plan("audio", fmt, [], self.registry, self.mix, self._kept).describe():
                lines.append(f"    -> {label:<40} {out}")
        return lines

    # running --------------------------------------------------------------------------------

    def _add(self, name: str, built: Built, offset: float) -> None:
        channel = call_plugin(self.mix, self.mix.obj.assign, name)
        stream = Stream(name, built, channel, None if self.live else round(offset * self.rate))
        if channel is None:
            self.context.notify(f"mix: no channel left for {name}; it is not recorded")
        else:
            self.context.notify(f"mix: {name} -> channel {channel + 1}")
        self.streams.append(stream)
        stream.task = asyncio.create_task(self._feed(stream))
        self._tasks.append(stream.task)

    async def _find(self, built: Built) -> None:
        """A source that stands for many streams: each one it finds joins the mix."""
        try:
            async for fields, source in built.obj.instances():
                name = fields.get("identity") or fields.get("stream") or f"stream {len(self.streams) + 1}"
                bind = getattr(source, "bind", None)
                if bind is not None:
                    call_plugin(built, bind, self.context)
                self._add(name, Built(name, source, built.provider), 0.0)
        finally:
            self._finders -= 1
            self._data.notify()

    async def _feed(self, stream: Stream) -> None:
        """Read one stream, convert it to the mix's format and place it on the timeline."""
        loop = asyncio.get_running_loop()
        chain: Chain | None = None
        source = stream.built
        try:
            async for frame in source.obj.frames():
                if frame.kind != "audio":
                    continue
                arrived = loop.time()
                if chain is None or not chain.accepts_frame(frame):
                    if chain is not None and chain.used:  # a format change: end that stretch
                        self._place(stream, await chain.flush(), arrived)
                    chain = Chain.plan("audio", frame.format, [], self.registry, self.mix, self._kept)
                self._place(stream, await chain.push(frame), arrived)
                if not self.live:
                    while stream.end is not None and stream.end - self._position > FILE_AHEAD * self.rate:
                        await self._mixed.wait(1.0)
            if chain is not None:
                self._place(stream, await chain.flush(), loop.time())
        except LkplugError:
            raise
        except Exception as exc:
            raise source.failure(exc) from exc
        finally:
            stream.done = True
            self._data.notify()

    def _place(self, stream: Stream, frames: list, arrived: float) -> None:
        if stream.channel is None:
            return
        for frame in frames:
            data = frame.data[:, 0]
            if self.live:
                end = frame.timestamp + len(data)
                if self._origin is None:  # the first frame of the mix ends now
                    self._origin = arrived - end / self.rate
                    self.context.notify(f"mix: recording from now, first stream {stream.name}")
                now = round((arrived - self._origin) * self.rate)
                if stream.shift is None:
                    stream.shift = now - end
                elif stream.shift + frame.timestamp < self._position:
                    # too late for its place (it came back after a gap, or a stall held it longer
                    # than the mix waits): it goes on where it arrived, never earlier
                    stream.shift = max(stream.shift, now - end)
                    stream.resumed += 1
            stream.place(stream.shift + frame.timestamp, data)
        self._data.notify()

    _position = 0  # timeline position the mix has written up to

    async def frames(self):
        for built, offset in self.sources:
            if getattr(built.obj, "fans_out", False):
                self._finders += 1
                self._tasks.append(asyncio.create_task(self._find(built)))
            else:
                reads = getattr(built.obj, "reads", ())
                name = os.path.splitext(os.path.basename(reads[0]))[0] if reads else built.label
                self._add(name, built, offset)
        loop = asyncio.get_running_loop()
        hint_at = loop.time() + HINT_AFTER
        while True:
            self._raise_failures()
            finished = self._finders == 0 and all(s.done for s in self.streams)
            if self.live:
                if self._origin is None:
                    if finished:
                        return
                    if hint_at is not None and loop.time() >= hint_at:
                        hint_at = self._hint()
                    await self._data.wait(0.5)
                    continue
                until = self._live_until(loop.time())
                if finished:
                    until = max([s.end or 0 for s in self.streams] + [self._position])
                    if until <= self._position:
                        return
                elif until - self._position < self.rate // 100:  # less than 10 ms due: wait for it
                    due = self._origin + LIVE_LATENCY + (self._position + self.rate // 100) / self.rate
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())
                    else:  # due, but its frames are not placed yet (on their way, or lkplug stalled)
                        await self._data.wait(0.05)
                    continue
                until -= (until - self._position) % (self.rate // 100) if not finished else 0
            else:
                waiting = [s for s in self.streams if not s.done]
                if self._finders or any(s.end is None for s in waiting):
                    await self._data.wait(0.5)
                    continue
                ends = [s.end for s in waiting] or [max([s.end or 0 for s in self.streams] + [0])]
                until = min(min(ends), self._position + round(FILE_BLOCK * self.rate))
                if until <= self._position:
                    if not waiting:
                        return
                    await self._data.wait(0.5)
                    continue
            samples = until - self._position
            blocks = [
                (s.channel, s.read(self._position, samples)) for s in self.streams if s.channel is not None
            ]
            data = call_plugin(self.mix, self.mix.obj.mix, blocks, samples)
            frame = AudioFrame(data, self.rate, self._position, self.format.layout)
            self._position = until
            self._mixed.notify()
            yield frame

    def _hint(self) -> None:
        """Streams were found but the mix has a channel for none of them (``order=`` with a typo):
        say whom it waits for and who is there, once (a source waiting for its own track says so
        itself). Returns None: told."""
        if not self.streams or any(s.channel is not None for s in self.streams):
            return None
        waiting = call_plugin(self.mix, getattr(self.mix.obj, "waiting_for", list))
        wanted = ", ".join(waiting) or "a stream it has a channel for"
        there = [
            call_plugin(b, b.obj.who_is_there) for b, _ in self.sources if hasattr(b.obj, "who_is_there")
        ]
        self.context.notify(
            f"mix: still waiting for {wanted}: {'; '.join(there) or 'no stream has a channel'}"
        )
        return None

    def _live_until(self, now: float) -> int:
        """How far the live mix may be written: up to the clock less ``LIVE_LATENCY``, but no further
        than every running stream has placed frames, leaving out a stream more than ``LIVE_LATENCY``
        behind the newest frames (a gap: it left, or is re-subscribed; its place is written as silence)
        and waiting for none when nothing was placed for ``LIVE_STALL``. When lkplug itself stalls,
        every stream's frames wait in their queues alike and the mix waits for them: written by the
        clock alone, their places would be silence and the streams go on later."""
        clock = math.floor((now - self._origin - LIVE_LATENCY) * self.rate)
        ends = [s.end for s in self.streams if s.channel is not None and not s.done and s.end is not None]
        if not ends:
            return clock
        newest = max(ends)
        placed = min(end for end in ends if end >= newest - LIVE_LATENCY * self.rate)
        return min(clock, max(placed, clock - round(LIVE_STALL * self.rate)))

    def _raise_failures(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        closing = [s.built for s in self.streams] + [b for b, _ in self.sources]
        seen = set()
        for built in closing:
            if id(built.obj) in seen:
                continue
            seen.add(id(built.obj))
            aclose = getattr(built.obj, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:  # noqa: BLE001 - close the others, then report
                    self.context.notify(f"{built.label}: closing failed: {exc}")

    @property
    def warnings(self) -> list[str]:
        out = []
        streams = {id(s.built.obj) for s in self.streams}
        for built, _ in self.sources:
            if id(built.obj) not in streams:
                out += list(getattr(built.obj, "warnings", ()))
        for s in self.streams:  # a stream's own warnings, its times where the mix placed it
            at = getattr(s.built.obj, "warnings_at", None)
            lines = at((s.shift or 0) / self.rate) if at is not None else getattr(s.built.obj, "warnings", ())
            out += [f"mix: {s.name}: {line}" for line in lines]
        out += [
            f"mix: {s.name} went on {s.resumed} times later than its timestamps said (gaps or stalls)"
            for s in self.streams
            if s.resumed
        ]
        late = [(s.name, s.late) for s in self.streams if s.late]
        out += [
            f"mix: {round(n / self.rate * 1000)} ms of {name} came too late for its place" for name, n in late
        ]
        return out


class MixPipeline(Pipeline):
    """A :class:`Pipeline` whose source is a :class:`MixSource`; ``--explain`` shows the inputs."""

    def explain(self) -> str:
        self._bind()
        inputs = self.source.obj.describe_inputs()
        mix = self.source.obj.mix
        inputs.append(f"mix     {mix.label}  ({mix.provider})  -> {self.source.obj.format}")
        return "\n".join([*inputs, super().explain()])


def source_with_offset(registry: Registry, text: str) -> tuple[Built, float]:
    """Build a source spec for a mix; ``offset=`` is the mix's, taken off before the source sees it."""
    spec = parse_spec(text)
    entry = registry.get("source", spec.name)
    offset = 0.0
    if "offset" in spec.params and entry.component.param("offset") is None:
        params = dict(spec.params)
        offset = OFFSET.parse(params.pop("offset"), spec.name)
        spec = Spec(spec.name, spec.value, params)
    return build_entry(entry, spec), offset


def expand_globs(registry: Registry, texts: Sequence[str]) -> list[str]:
    """``file:rec/*.wav`` stands for every file it matches (sorted), when no file has that name: for
    a source whose main parameter is a ``path`` (``track:*`` globs over participants by itself)."""
    import glob

    out = []
    for text in texts:
        spec = parse_spec(text)
        value = spec.value
        is_path = registry.get("source", spec.name).component.positional == "path"
        if is_path and value and any(c in value for c in "*?[") and not os.path.exists(value):
            matches = sorted(glob.glob(value))
            if not matches:
                raise UsageError(f"{text}: no file matches {value}")
            out += [format_spec(Spec(spec.name, match, spec.params)) for match in matches]
        else:
            out.append(text)
    return out


# why a mix's sink has no fields: "wav:out/{stem}.wav: nothing fills {stem} here: ..."
ONE_OUTPUT = "--proc mix writes one output for all its inputs; name it in full"


def mix_pipeline(
    sources: Sequence[str],
    processors: Sequence[str],
    sinks: Sequence[str],
    registry: Registry,
    context: RunContext | None = None,
) -> MixPipeline:
    """``sources -> mix -> processors -> sinks``: ``processors[0]`` must be a stage that fans in."""
    later = [text for text in processors[1:] if fans_in(registry, text)]
    if later:
        raise UsageError(f"{later[0]} combines streams: give it once, as the first --proc")
    if not processors or not fans_in(registry, processors[0]):
        raise UsageError(
            "several --source options need --proc mix (e.g. --proc mix:channels) to combine them"
        )
    sinks = [fill(text, {}, ONE_OUTPUT) for text in sinks]  # before any input is opened
    built = [build(registry, "processor", p) for p in processors]
    inputs = [source_with_offset(registry, text) for text in expand_globs(registry, sources)]
    mix = built[0]
    mixed = MixSource(inputs, mix, registry)
    names = " + ".join(b.label for b, _ in inputs)
    source = Built(f"{mix.label} of {names}", mixed, mix.provider)
    return MixPipeline(
        source, built[1:], [build(registry, "sink", s) for s in sinks], registry, context=context
    )
