"""Fan-out: one pipeline per stream that a source finds (``track:*``, ``track:guest-*``).

The processors are built afresh for every stream (they keep state) and the sink specs are templates
filled from the stream's fields, as LiveKit Egress names its files: ``wav:rec/{identity}-{source}.wav``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from .chain import Built
from .components import RunContext
from .engine import Pipeline, RunReport, build, refuse_shared_outputs
from .errors import LkplugError, MediaError, UsageError
from .paths import check_folder
from .progress import counted
from .registry import Registry
from .spec import parse_spec
from .templates import field_list, fill, used_fields

# characters that must not reach a path from a participant's identity
_UNSAFE = re.compile(r"[^\w.@+=-]")


def render(template: str, fields: dict[str, str], raw: bool = False) -> str:
    """Fill ``{field}`` placeholders (:func:`lkplug.templates.fill`); values are made safe to use in a
    file name (a participant's identity), unless ``raw`` (a batch's file names and folders, which come
    from the file system). Raises UsageError for a field not in ``fields`` or in format syntax."""
    safe = fields if raw else {key: _UNSAFE.sub("_", str(value)) or "_" for key, value in fields.items()}
    return fill(template, safe)


def make_folder(path: Path) -> None:
    """Create the folder of a templated output (``wav:rec/{identity}.wav`` makes ``rec/``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MediaError(f"cannot write {path}: cannot create folder {path.parent}: {exc.strerror}") from None
    check_folder(path)


def make_sink_folders(sinks: Sequence[Built]) -> None:
    """Create the output folders of built file sinks (those whose object has a ``path``)."""
    for sink in sinks:
        path = getattr(sink.obj, "path", None)
        if isinstance(path, Path):
            make_folder(path)


class FanOut:
    """Runs like a :class:`Pipeline` (``explain``, ``run``, ``stop``) but starts one pipeline per
    stream; a stream that fails is reported and the others go on."""

    def __init__(
        self,
        source: Built,
        processors: Sequence[str],
        sinks: Sequence[str],
        registry: Registry,
        pace: float | None = None,
        context: RunContext | None = None,
        make_folders: bool = True,
    ):
        self.source = source
        self.make_folders = make_folders  # False: only check (``lkplug worker`` at start)
        self.processor_specs = list(processors)
        self.sink_templates = list(sinks)
        self.registry = registry
        self.pace = pace
        self.context = context or RunContext()
        self.duration: float | None = None  # per stream
        self.fields: tuple[str, ...] = tuple(getattr(source.obj, "fields", ("identity",)))
        self._check_templates()
        self._pipelines: set[Pipeline] = set()
        self._stopping = False
        self._all_ran = False  # with a duration: every stream found has run that long
        self._finder: asyncio.Task | None = None
        self.streams = 0  # streams found and run

    def _check_templates(self) -> None:
        example = {field: field for field in self.fields}
        for template in self.sink_templates:
            used = used_fields(template)
            spec = parse_spec(render(template, example))
            if (spec.value is not None or spec.params) and not used & {"identity", "sid"}:
                raise UsageError(
                    f"{self.source.label} runs one pipeline per track: give each its own output, "
                    f"e.g. --sink 'wav:rec/{{identity}}-{{source}}.wav' (fields: {field_list(self.fields)})"
                )
        # fail on unknown components, bad parameters and unusable folders now, not when the first
        # track shows up (maybe hours later); folders without fields in them are made now
        _, sinks = self._build(example, make_folders=False)
        refuse_shared_outputs(sinks)  # filled alike for every stream: alike for each of them
        if self.make_folders:
            # built from the templates as written, so that a message names wav:rec/{identity}.wav,
            # not a path with the word "identity" in it where no participant is yet
            fixed = [
                build(self.registry, "sink", t) for t in self.sink_templates if "{" not in str(Path(t).parent)
            ]
            make_sink_folders(fixed)

    def _build(self, fields: dict[str, str], make_folders: bool = True) -> tuple[list[Built], list[Built]]:
        processors = [build(self.registry, "processor", spec) for spec in self.processor_specs]
        sinks = [build(self.registry, "sink", render(t, fields)) for t in self.sink_templates]
        if make_folders and self.make_folders:
            make_sink_folders(sinks)
        return processors, sinks

    @property
    def realtime_sinks(self) -> bool:
        return False  # live streams arrive at real time by themselves

    def explain(self) -> str:
        self.source.obj.bind(self.context)
        lines = [
            f"source  {self.source.label}  ({self.source.provider})",
            "  one pipeline per matching stream; for each:",
        ]
        for spec in self.processor_specs:
            lines.append(f"    -> {spec}")
        for template in self.sink_templates:
            lines.append(f"sink    {template}  (fields: {field_list(self.fields)})")
        return "\n".join(lines)

    def stop(self) -> None:
        self._stopping = True
        if self._finder is not None:
            self._finder.cancel()
        for pipeline in self._pipelines:
            pipeline.stop()

    def drop_backlog(self) -> None:
        """See ``Pipeline.drop_backlog``."""
        for pipeline in list(self._pipelines):
            pipeline.drop_backlog()

    def finalize_now(self, wait: float = 0.0) -> list[str]:
        """Close every running pipeline's sinks from any thread (see ``Pipeline.finalize_now``)."""
        return [label for pipeline in list(self._pipelines) for label in pipeline.finalize_now(wait)]

    async def run(self, on_progress: Callable[[float, str], None] | None = None) -> RunReport:
        """Until the source finds no more streams and every pipeline ended (or ``stop()``);
        ``on_progress(seconds, stream)`` gets each stream's media seconds."""
        report = RunReport()
        loop = asyncio.get_running_loop()
        started = loop.time()
        runs: set[asyncio.Task] = set()
        failures: list[str] = []
        self.source.obj.bind(self.context)

        async def one(label: str, pipeline: Pipeline) -> None:
            self.streams += 1
            progress = None if on_progress is None else lambda seconds: on_progress(seconds, label)
            try:
                result = await pipeline.run(progress)
            except LkplugError as exc:
                failures.append(f"{label}: {exc}")
                self.context.notify(f"{label} failed: {exc}")
                return
            finally:
                self._pipelines.discard(pipeline)
                # with a duration, the job is done once every stream found so far has run its length
                # (a room's source would otherwise wait for new participants until stopped)
                others = [t for t in runs if t is not asyncio.current_task()]
                if self.duration is not None and all(t.done() for t in others):
                    self._all_ran = True
                    self._finder.cancel()
            report.frames += result.frames
            report.seconds += result.seconds
            report.warnings += [f"{label}: {w}" for w in result.warnings]
            self.context.notify(f"{label} ended after {result.seconds:.1f} s")

        async def find() -> None:
            async for fields, source in self.source.obj.instances():
                processors, sinks = self._build(fields)
                label = fields.get("stream") or render("{identity}", fields)
                built = Built(label, source, self.source.provider)
                pipeline = Pipeline(
                    built, processors, sinks, self.registry, self.pace, self.context, self.duration
                )
                self._pipelines.add(pipeline)
                self.context.notify(f"{label} -> " + ", ".join(s.label for s in sinks))
                runs.add(asyncio.create_task(one(label, pipeline)))

        self._finder = asyncio.create_task(find())
        if self._stopping:
            self._finder.cancel()
        try:
            await self._finder
        except asyncio.CancelledError:
            if not (self._stopping or self._all_ran):
                raise
        finally:
            for pipeline in list(self._pipelines):
                if self._stopping:
                    pipeline.stop()
            if runs:
                await asyncio.gather(*runs, return_exceptions=True)
            await self.source.obj.aclose()
            report.stopped = self._stopping
            report.wall = loop.time() - started
        if failures:
            failed = f"{len(failures)} of {counted(len(runs), 'stream')} failed"
            raise LkplugError(f"{failed}; first: {failures[0]}")
        return report
