"""Batch file jobs: a source path that is a glob (``file:rec/*.m4a``, ``file:rec/**/*.wav``) or a list
file (``file:@inputs.txt``) stands for many inputs, as ``track:*`` stands for many streams; each
input runs as its own pipeline, with the sink specs filled from its fields (``{stem}``, ``{name}``,
``{ext}``, ``{dir}``, ``{relpath}``), as the fan-out fills them from a track's.

The inputs run in N worker processes (``-j``; each loads the plugins once and runs many files) or,
with ``--cluster``, as tasks on an existing Dask distributed scheduler. A failing input is reported
in one line and the others go on; each input's outputs are renamed to their final names only once it
has run to its end (``lkplug.outputs``), so an interrupted batch leaves no partial file under a final
name, and ``--skip-existing`` resumes one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .children import end_with_parent
from .components import RunContext
from .engine import Pipeline, build, build_entry
from .errors import LkplugError, MediaError, UsageError
from .fanout import render
from .manager import portable_plugins
from .outputs import held_outputs, remove_stale, remove_temporaries
from .paths import is_pipe
from .progress import BatchStatus, counted
from .registry import Registry
from .spec import Spec, format_spec, parse_spec
from .templates import field_list, used_fields

# glob, multiprocessing and uuid are imported where a batch uses them: every run of the file source
# imports this module (to ask batch_source) and most runs are one file

FIELDS = ("stem", "name", "ext", "dir", "relpath")
_GLOB_CHARS = frozenset("*?[")
POLL_SECONDS = 0.1  # how often a worker looks whether the batch was stopped, and the parent for results
CLUSTER_PROGRESS_SECONDS = 0.5  # how often a task on a cluster sends its progress (through the scheduler)
_STOPS = (signal.SIGINT, signal.SIGTERM)  # what stops a batch (a second SIGINT ends its workers)


def is_pattern(path: str) -> bool:
    """A glob or an ``@list`` file, unless a file of that very name exists."""
    return (path.startswith("@") or bool(_GLOB_CHARS & set(path))) and not os.path.exists(path)


def expand(pattern: str) -> tuple[list[str], str]:
    """The files a glob or ``@list`` names, sorted (a list keeps its order), and the root that
    ``{relpath}`` is relative to: the glob's folder before its first wildcard; for a list, the
    folder all its files share. A list holds one path per line (relative to the current folder, as
    ``find`` prints them); blank lines and lines starting with ``#`` are skipped; its paths are
    returned as they are, missing ones too (each is then one failed input). A glob's matches that
    are folders are left out; its other matches are returned, regular files or not (a link to
    nothing, a FIFO: each is then one failed input, see ``not_a_file``). ``**`` does not enter
    folders that are symbolic links (as ``find`` and pathlib do not: a link to a parent folder would
    give every file again at each depth); a final ``**`` is every file below (as bash's globstar and
    ``glob(recursive=True)``); ``*`` and ``**`` skip hidden names, as the shell's do.
    Raises UsageError for an ``@`` with no name, MediaError when nothing matches or the list cannot
    be read."""
    if pattern.startswith("@"):
        list_file = pattern[1:]
        if not list_file:  # Path("") is the current folder: "cannot read ... : Is a directory"
            raise UsageError("@ names no list of inputs: give the list file after it (file:@inputs.txt)")
        try:
            lines = Path(list_file).read_text().splitlines()
        except OSError as exc:
            raise MediaError(f"cannot read the list of inputs {list_file}: {exc.strerror}") from None
        files = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not files:
            raise MediaError(f"{list_file} lists no inputs")
        root = os.path.commonpath([os.path.abspath(os.path.dirname(path)) for path in files])
        return files, root
    if os.path.isfile(pattern):  # one file (a batch of one), whatever its name holds ([1], *)
        return [pattern], os.path.dirname(pattern) or "."
    root, below = _glob_parts(pattern)
    if "**" in below:
        if below[-1] == "**":  # pathlib's final ** gives folders only
            below += ("*",)
        files = sorted(_walk_glob(root, below))
    else:  # no recursion, no loop: the shell's glob (a link to a folder is entered, as ls rec/*/ does)
        import glob

        files = sorted(path for path in glob.glob(pattern) if not os.path.isdir(path))
    if not files:
        raise MediaError(f"no file matches {pattern}")
    return files, root


def _glob_parts(pattern: str) -> tuple[str, tuple[str, ...]]:
    """A glob's root (its folder before the first wildcard) and its parts below it; a ``**`` inside a
    name (``a**.wav``) is a ``*`` there, as in bash (pathlib raises ValueError for it)."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    root = str(Path(*parts[:fixed])) if fixed else "."
    return root, tuple(part if part == "**" else _single_stars(part) for part in parts[fixed:])


def glob_matches(pattern: str, path: str) -> bool:
    """Whether the glob ``pattern`` (as ``expand`` reads it: ``**`` any depth of folders, ``*``, ``?``
    and ``[abc]`` within a name) matches ``path``, a file that may not exist yet."""
    import fnmatch

    root, names = _glob_parts(pattern)
    below = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if below.startswith(os.pardir):
        return False

    def match(names: tuple, rest: tuple) -> bool:
        if not names:
            return not rest
        if names[0] == "**":  # none or any folders, or (last) any file below
            return any(match(names[1:], rest[i:]) for i in range(len(rest) + 1))
        return bool(rest) and fnmatch.fnmatchcase(rest[0], names[0]) and match(names[1:], rest[1:])

    return match(names, Path(below).parts)


def _single_stars(part: str) -> str:
    while "**" in part:
        part = part.replace("**", "*")
    return part


def _walk_glob(root: str, pattern: Sequence[str]) -> list[str]:
    """The paths under ``root`` that are not folders and whose path below it matches ``pattern``
    (its parts, ``**`` among them): pathlib's glob, whose ``**`` does not enter links to folders;
    names starting with ``.`` are left out unless the pattern itself names hidden ones (as glob's
    ``*`` leaves them out)."""
    hidden_asked = any(part.startswith(".") for part in pattern)
    found = []
    for path in Path(root).glob(os.path.join(*pattern)):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if (hidden_asked or not hidden) and not path.is_dir():
            found.append(str(path))
    return found


def not_a_file(path: str) -> str | None:
    """Why ``path`` cannot be a batch input, in one line, or None for a regular file: it is missing,
    a link to nothing, a folder, a FIFO, a socket or a device (``ffmpeg -i`` on a FIFO waits for a
    writer forever; on a link to nothing it says "No such file or directory")."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"no such file: {path} is a link to {os.readlink(path)}"
        return f"no such file: {path}"
    except OSError as exc:  # a link loop, a file taken for a folder (a.wav/x)
        return f"cannot read {path}: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "a device")
    return f"not a regular file: {path} is {kind}"


def file_fields(path: str, root: str) -> dict[str, str]:
    """The template fields of one input: ``rec/day1/talk.m4a`` under the root ``rec`` gives
    stem ``talk``, name ``talk.m4a``, ext ``m4a``, dir ``rec/day1`` and relpath ``day1``."""
    file = Path(path)
    folder = os.path.dirname(path) or "."
    relpath = os.path.relpath(os.path.abspath(folder), os.path.abspath(root))
    ext = file.suffix.lstrip(".")
    return {"stem": file.stem, "name": file.name, "ext": ext, "dir": folder, "relpath": relpath}


def _once(paths) -> tuple[list[str], list[str]]:
    """``paths`` with each file once (the same file by another name: a repeated line, a link), in
    their order, and the names dropped. Of a file and links to it, the file itself is kept."""
    by_file: dict[str, list[str]] = {}
    for path in paths:
        by_file.setdefault(os.path.realpath(path), []).append(path)
    kept, dropped = [], []
    for real, names in by_file.items():
        unique = list(dict.fromkeys(names))
        keep = names.index(next((name for name in unique if os.path.abspath(name) == real), unique[0]))
        kept.append(names[keep])
        dropped += names[:keep] + names[keep + 1 :]
    return kept, dropped


def _check_output(template: str, output: str, fields: dict[str, str]) -> None:
    """Raise UsageError for an output that would land outside the folder its template names
    (``out/{dir}/{stem}.wav`` with a ``{dir}`` of ``../x``) or under a file (``out/{stem}.wav/...``
    where ``out/a.wav`` is a file): one line naming the user's path, before anything runs."""
    fixed = os.path.dirname(template.split("{", 1)[0])  # "out/{relpath}/{stem}.wav" -> "out"
    if fixed and "{" in template:
        inside = os.path.normpath(output)
        if os.path.commonpath([os.path.abspath(fixed), os.path.abspath(inside)]) != os.path.abspath(fixed):
            used = ", ".join(
                f"{{{name}}} is {fields[name]}"
                for name in FIELDS
                if f"{{{name}}}" in template and ".." in Path(fields[name]).parts
            )
            if not used:  # no field holds a "..": the template's own (out/{stem}/../../x.wav) does it
                raise UsageError(
                    f"{template} would write {output}, outside {fixed}/: the template's own '..'"
                    " leads out of it"
                )
            raise UsageError(
                f"{template} would write {output}, outside {fixed}/ ({used}); use {{relpath}}, which stays"
                " below the inputs' root"
            )
    folder = Path(output).parent
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"cannot write {output}: {parent} is a file, not a folder")
            break


@dataclass(frozen=True)
class Job:
    """One input's pipeline as spec texts, sent to a worker process or a Dask worker (picklable)."""

    input: str
    source: str
    processors: tuple[str, ...]
    sinks: tuple[str, ...]
    outputs: tuple[str, ...]  # the sinks' final paths
    plugins: tuple[str, ...] = ()  # $LKPLUG_PLUGINS's and -p's, .py paths absolute (portable_plugins)
    pace: float | None = None
    duration: float | None = None
    options: dict = field(default_factory=dict)  # values of plugin-added run options
    stop_event: str | None = None  # on a Dask cluster: the name of the distributed.Event that stops it
    progress_topic: str | None = None  # ...and the event topic its progress is logged under
    number: int = 0  # its place in the batch: a local worker posts the one it runs (see _LocalPool)


@dataclass
class Result:
    input: str
    ok: bool = False
    seconds: float = 0.0  # media seconds
    wall: float = 0.0
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False  # not started: the batch was stopped while it waited
    interrupted: bool = False  # stopped while it ran (Ctrl-C, --fail-fast); its outputs removed
    crashed: bool = False  # the worker process died, not the input


class Batch:
    """The inputs of a glob or list, checked and turned into jobs. Raises UsageError for a sink
    spec that would give two inputs the same output (or write over an input)."""

    def __init__(
        self,
        registry: Registry,
        source: str,
        processors: Sequence[str],
        sinks: Sequence[str],
        plugins: Sequence[str] = (),
        pace: float | None = None,
        duration: float | None = None,
        options: dict | None = None,
        absolute: bool = False,
    ):
        """``absolute``: write the inputs' and outputs' paths absolute in the jobs, for workers that
        run in another folder (a cluster's, on storage every worker sees under the same path)."""
        # what the workers load, wherever they run ($LKPLUG_PLUGINS's too): a forked one uses it as it is
        plugins = portable_plugins(plugins)
        _registries.setdefault(plugins, registry)
        spec, param, pattern = _batch_param(registry, source, sinks)
        if pattern is None:
            raise UsageError(f"{source}: not a batch (give the file source a glob or @list)")
        self.pattern = pattern
        # a list's order is its writer's, and is kept; a glob's (by name) is no one's choice
        self.in_order = pattern.startswith("@")
        listed, self.root = expand(pattern)
        # a list may name a file that is gone, a glob match a link to nothing or a FIFO (each one failed
        # input, not a refused batch, nor one dropped unsaid) or one file twice (a list made by hand, a
        # link and its target reached by a glob): each file runs once
        reasons = {path: not_a_file(path) for path in listed}
        self.missing = [(path, reasons[path]) for path in listed if reasons[path]]
        self.files, self.repeated = _once(path for path in listed if not reasons[path])
        sink_entries = [registry.get("sink", parse_spec(text).name) for text in sinks]
        for text in sinks:  # refused now, even where no file is there to fill it (a list of missing files)
            _fill(parse_spec(text), dict.fromkeys(FIELDS, "x"))
        templates = [_output_path(e, parse_spec(t)) for e, t in zip(sink_entries, sinks, strict=True)]
        self.jobs: list[Job] = []
        seen: dict[str, str] = {}
        # compared by real path: an output folder that is a link to the inputs' (or to another
        # output's) would otherwise write over an input, or two inputs into one file, exit 0
        inputs = {os.path.realpath(path) for path in self.files}
        globbed = not self.in_order and not os.path.isfile(pattern)  # not a list, nor one file named
        for path in self.files:
            fields = file_fields(path, self.root)
            rendered = [_fill(parse_spec(text), fields) for text in sinks]
            paths = [_output_path(e, s) for e, s in zip(sink_entries, rendered, strict=True)]
            for template, output in zip(templates, paths, strict=True):
                if output:
                    _check_output(template, output, fields)
            if absolute:
                rendered = [_absolute_path(e, s) for e, s in zip(sink_entries, rendered, strict=True)]
                paths = [_output_path(e, s) for e, s in zip(sink_entries, rendered, strict=True)]
            outputs = tuple(path for path in paths if path)
            for output in outputs:
                if is_pipe(output):  # no field can tell inputs apart there
                    raise UsageError(
                        f"a batch writes an output per input, and {output} (a pipe) takes one: give the sink"
                        f" a file path with a field ({field_list(FIELDS)}, e.g. out/{{stem}}.wav)"
                    )
                key = os.path.realpath(output)
                if key in inputs:
                    raise UsageError(f"{output} is an input of the batch; give the sink another folder")
                if seen.get(key) == path:
                    raise UsageError(f"two sinks both write {output} for {path}; give each its own file")
                if key in seen:
                    raise UsageError(
                        f"{seen[key]} and {path} would both write {output}: put a field that tells them"
                        f" apart in the sink's path ({field_list(FIELDS)}, e.g. out/{{relpath}}/{{stem}}.wav)"
                    )
                seen[key] = path
                if globbed and glob_matches(pattern, output):
                    raise UsageError(
                        f"{output} would be an input of this batch when it runs again ({pattern} matches"
                        " it), so the batch could not be resumed; give the sink a folder the glob does not"
                        " reach"
                    )
            source_spec = _with_param(spec, param, os.path.abspath(path) if absolute else path)
            self.jobs.append(
                Job(
                    path,
                    format_spec(source_spec),
                    tuple(processors),
                    tuple(format_spec(s) for s in rendered),
                    outputs,
                    plugins,
                    pace,
                    duration,
                    dict(options or {}),
                    number=len(self.jobs),
                )
            )
        if not self.jobs:
            return  # every listed file is missing: each fails, nothing to check
        # unknown components and bad parameters fail now, once, not in every worker
        first = self.jobs[0]
        build(registry, "source", first.source)
        for text in first.processors:
            build(registry, "processor", text)
        for entry, text in zip(sink_entries, first.sinks, strict=True):
            build_entry(entry, parse_spec(text))

    def explain(self, registry: Registry) -> str:
        if not self.jobs:
            return f"batch   none of the {counted(len(self.missing), 'input')} of {self.pattern} is a file"
        first = self.jobs[0]
        lines = [
            f"batch   {counted(len(self.jobs), 'input')} from {self.pattern} (root {self.root}); for each,"
            f" e.g. {first.input}:",
            _pipeline(first, registry).explain(),
        ]
        if first.outputs:
            lines.append(f"writes  {', '.join(first.outputs)}  (fields: {field_list(FIELDS)})")
        return "\n".join(lines)

    def pending(self, skip_existing: bool) -> tuple[list[Job], list[Job]]:
        """(to run, skipped): with ``skip_existing`` an input whose outputs all exist is skipped."""
        if not skip_existing:
            return list(self.jobs), []
        todo, done = [], []
        for job in self.jobs:
            exists = job.outputs and all(os.path.exists(output) for output in job.outputs)
            (done if exists else todo).append(job)
        return todo, done


def batch_source(registry: Registry, source: str, sinks: Sequence[str] = ()) -> bool:
    """Whether ``source`` (a spec text) runs as a batch: a glob or ``@list`` in the parameter that
    its component marks with ``batch_param`` (the file source's ``path``), or one file whose
    ``sinks`` use the batch's fields (``wav:out/{stem}.wav``: a batch of one fills them)."""
    return _batch_param(registry, source, sinks)[2] is not None


def _batch_param(
    registry: Registry, source: str, sinks: Sequence[str] = ()
) -> tuple[Spec, str | None, str | None]:
    spec = parse_spec(source)
    entry = registry.get("source", spec.name)
    param = getattr(entry.component.factory, "batch_param", None)
    if param is None:
        return spec, None, None
    value = spec.value if entry.component.positional == param and spec.value is not None else None
    value = spec.params.get(param, value)
    if value is None:
        return spec, param, None
    one_file = os.path.isfile(value) and any(used_fields(sink) & set(FIELDS) for sink in sinks)
    return spec, param, value if is_pattern(value) or one_file else None


def _with_param(spec: Spec, param: str, value: str) -> Spec:
    params = {key: v for key, v in spec.params.items() if key != param}
    if spec.value is not None and param not in spec.params:
        return Spec(spec.name, value, params)
    return Spec(spec.name, spec.value, {**params, param: value})


def _fill(spec: Spec, fields: dict[str, str]) -> Spec:
    """Fill the fields into a parsed sink spec's values (after parsing: a file name with a comma or
    a quote stays one value)."""
    value = None if spec.value is None else render(spec.value, fields, raw=True)
    return replace(spec, value=value, params={k: render(v, fields, raw=True) for k, v in spec.params.items()})


def _absolute_path(entry, spec: Spec) -> Spec:
    path = _output_path(entry, spec)
    if path is None:
        return spec
    if "path" in spec.params:
        return replace(spec, params={**spec.params, "path": os.path.abspath(path)})
    return replace(spec, value=os.path.abspath(path))


def _output_path(entry, spec: Spec) -> str | None:
    """The file a sink writes: its ``path`` parameter, if it has one."""
    if entry.component.param("path") is None:
        return None
    if "path" in spec.params:
        return spec.params["path"]
    return spec.value if entry.component.positional == "path" else None


# the worker side ------------------------------------------------------------------------------

_registries: dict[tuple[str, ...], Registry] = {}
_stop_event = None  # set by the parent (local pool) when the batch is stopped
# the parent's shared arrays of the media seconds each local worker has done of its current input and
# of the job it runs (Job.number; -1 between jobs: a worker that dies leaves it there), and this
# worker's place in them (taken at start from a shared counter)
_progress = None
_running = None
_slot = 0


def _registry(plugins: tuple[str, ...]) -> Registry:
    """Plugins are loaded once per worker process, not per file."""
    if plugins not in _registries:
        _registries[plugins] = Registry.load(plugins, environment=False)  # Job.plugins hold them
    return _registries[plugins]


def _init_worker(
    stop_event, plugins: tuple[str, ...], progress=None, slots=None, running=None, pids=None
) -> None:
    global _stop_event, _progress, _running, _slot
    # Ctrl-C on a terminal (or a SIGTERM to the group) reaches every process: the parent decides,
    # and tells us through stop_event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # ...but a parent killed outright (SIGKILL) can tell nobody: end with it, leaving only .part files
    end_with_parent(signal.SIGKILL)
    _stop_event = stop_event
    if progress is not None:
        with slots.get_lock():
            _slot, slots.value = slots.value, slots.value + 1
        _progress, _running = progress, running
        pids[_slot] = os.getpid()
    _registry(plugins)


def _pipeline(job: Job, registry: Registry) -> Pipeline:
    return Pipeline(
        build(registry, "source", job.source),
        [build(registry, "processor", text) for text in job.processors],
        [build(registry, "sink", text) for text in job.sinks],
        registry,
        pace=job.pace,
        context=RunContext(options=dict(job.options)),
        duration=job.duration,
    )


def run_job(job: Job) -> Result:
    """Run one input to its end in this process; never raises for the input's own failures (they
    come back in ``Result.error``, one line). Its outputs get their final names only if it ended
    by itself without error."""
    started = time.monotonic()
    result = Result(job.input)
    stop_event = _stop_event
    if job.stop_event is not None:  # on a Dask worker
        from distributed import Event

        stop_event = Event(job.stop_event)
    if stop_event is not None and stop_event.is_set():
        result.stopped = True  # queued before the batch was stopped
        return result
    if _running is not None:
        _running[_slot] = job.number
    done = [0.0, 0.0]  # media seconds so far (for the summary), and when a cluster was last told
    worker = None
    if job.progress_topic is not None:
        from distributed import get_worker

        worker = get_worker()

    def on_progress(seconds: float) -> None:
        done[0] = seconds
        if _progress is not None:
            _progress[_slot] = seconds
        elif worker is not None and time.monotonic() >= done[1]:  # the parent's progress line
            done[1] = time.monotonic() + CLUSTER_PROGRESS_SECONDS
            worker.log_event(job.progress_topic, [job.input, seconds])

    if worker is not None:  # at once, not at its first frame: a stop then lets it run (see _DaskPool.stop)
        on_progress(0.0)

    try:
        pipeline = _pipeline(job, _registry(job.plugins))
        for output in job.outputs:
            _make_folder(Path(output))
        with held_outputs(tidy_stale=False) as held:  # the parent has removed the stale ones
            try:
                report = asyncio.run(_run(pipeline, stop_event, on_progress))
            except BaseException:
                held.discard()
                raise
            if report.stopped:
                held.discard()
                result.interrupted = True
            else:
                held.commit()
                result.ok = True
        result.seconds = report.seconds
        result.warnings = list(report.warnings)
    except LkplugError as exc:
        result.error = " ".join(str(exc).split())
    except Exception as exc:  # a bug, ours or a plugin's: still one line, and the batch goes on
        result.error = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
    if result.error and _is_set(stop_event):
        # stopped (Ctrl-C, another input's failure with --fail-fast), it failed because it was: an
        # opus sink stopped before its first whole sample says it has nothing to write. Its outputs
        # are gone (held.discard above), as an interrupted input's are
        result.error, result.interrupted = "", True
    if _progress is not None:
        _progress[_slot] = 0.0  # this input's seconds come back in the result
        _running[_slot] = -1
    result.seconds = result.seconds or done[0]  # what a stopped or failed input had done too
    result.wall = time.monotonic() - started
    return result


def _is_set(stop_event) -> bool:
    """Whether the batch was stopped; False with no event, or a cluster's that cannot be asked."""
    if stop_event is None:
        return False
    try:
        return stop_event.is_set()
    except Exception:  # the scheduler is gone: nobody is there to have stopped it
        return False


def _make_folder(path: Path) -> None:
    """Make ``path``'s folder; MediaError naming ``path`` if it cannot be (a file where a folder
    should be, made since the batch was checked; no permission)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MediaError(
            f"cannot write {path}: cannot make its folder {path.parent} ({exc.strerror})"
        ) from None


async def _run(pipeline: Pipeline, stop_event, on_progress=None):
    async def watch():
        while not stop_event.is_set():
            await asyncio.sleep(POLL_SECONDS)
        pipeline.stop()

    watcher = asyncio.create_task(watch()) if stop_event is not None else None
    try:
        return await pipeline.run(on_progress)
    finally:
        if watcher is not None:
            watcher.cancel()


# the parent side ------------------------------------------------------------------------------


def _start_method() -> str:
    """Fork this process when that is safe: it has loaded the plugins already, and a fork skips a new
    interpreter's start-up and imports (measured: 0.5 s of CPU less for a batch on two workers).
    Only the main thread may be running (a fork copies no other thread, and a lock one of them holds
    stays locked); otherwise, and where there is no fork, a fresh interpreter is spawned."""
    import multiprocessing

    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _LocalPool:
    """N worker processes, each loading the plugins once (a forked one has them already)."""

    def __init__(self, workers: int, plugins: tuple[str, ...]):
        self.workers, self.plugins = workers, plugins
        self._start()

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context(_start_method())
        self.stop_event = context.Event()
        self.progress = context.Array("d", self.workers, lock=False)  # one float per worker, each its own
        self.running = context.Array("i", [-1] * self.workers, lock=False)  # Job.number per worker
        self.pids = context.Array("i", self.workers, lock=False)
        self.processes: dict = {}  # every worker seen, by pid: their exit codes once the pool broke
        self.executor = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(
                self.stop_event,
                self.plugins,
                self.progress,
                context.Value("i", 0),
                self.running,
                self.pids,
            ),
        )

    def lost(self, future) -> bool:
        """Whether ``future`` ended because a worker process died (the pool is then broken)."""
        from concurrent.futures.process import BrokenProcessPool

        return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)

    def replace(self) -> dict[int, str]:
        """A worker died (killed, out of memory), which breaks the whole pool: end it and start a new
        one. Returns how each dead worker died ("SIGKILL"), by the Job.number it was running. The
        others are ended too (a broken pool waits for them, and they for it: their inputs are run
        again); their temporaries are left for the caller to remove."""
        from multiprocessing.connection import wait as ready

        processes = {**self.processes, **(self.executor._processes or {})}
        # which had ended before the others are killed: their sentinels say so whoever has reaped them
        # (the pool's thread joins them too, and a second waitpid would find nothing)
        by_sentinel = {process.sentinel: pid for pid, process in processes.items()}
        dead = {by_sentinel[sentinel] for sentinel in ready(list(by_sentinel), timeout=0)}
        running = dict(zip(self.pids, self.running, strict=True))
        for process in processes.values():
            process.kill()
        self.executor.shutdown(wait=True)  # every worker is joined: their exit codes are known
        gone = {running[pid]: _death(processes[pid].exitcode) for pid in dead if running.get(pid, -1) >= 0}
        self._start()
        return gone

    def in_progress(self) -> float:
        """Media seconds done of the inputs being run now."""
        return sum(self.progress)

    def slots(self) -> int:
        """How many inputs run at once."""
        return self.workers

    def ended(self, job: Job) -> None:
        pass  # its worker has zeroed its place already

    def started(self) -> set[str]:
        """The inputs being run now, for a second Ctrl-C: none here, as it kills the workers and their
        results then say so (crashed)."""
        return set()

    def submit(self, jobs: list[Job]) -> list:
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        futures = []
        for job in jobs:
            try:
                futures.append(self.executor.submit(run_job, job))
            except BrokenProcessPool as exc:  # a worker died since the last look: handled as lost
                futures.append(Future())
                futures[-1].set_exception(exc)
        self.processes.update(self.executor._processes or {})
        return futures

    def wait(self, futures: list) -> None:
        """Until one of ``futures`` is done, or POLL_SECONDS (so that a signal is seen)."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_any

        wait_any(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)

    def stop(self, futures) -> None:
        """Inputs not started are dropped; running ones stop and discard their outputs."""
        self.stop_event.set()
        for future in futures:
            future.cancel()

    def abort(self) -> None:
        # a second Ctrl-C: end the workers now (final names untouched; the parent removes their
        # temporaries once they are gone)
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.kill()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _death(code: int) -> str:
    """How a worker process ended, from its exit code: "SIGKILL", "exit code 3"."""
    return signal.Signals(-code).name if code < 0 else f"exit code {code}"


def check_cluster(address: str) -> None:
    """Raise UsageError, one line, for a ``--cluster`` that is no scheduler address Dask can use
    (``bogus``: no port; ``foo://h:1``: no such protocol), or when Dask is not installed."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:
        raise UsageError("--cluster needs Dask: pip install 'lkplug[cluster]'") from None
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        parse_host_port(location)
    except ValueError:  # Dask's reasons ("invalid literal for int() with base 10") tell less
        raise UsageError(f"--cluster {address}: give the scheduler's address as tcp://HOST:PORT") from None


class _DaskPool:
    """Per-file tasks on an existing Dask distributed scheduler; every worker must see the files."""

    def __init__(self, address: str):
        try:
            from distributed import Client, Event
        except ImportError:
            raise UsageError("--cluster needs Dask: pip install 'lkplug[cluster]'") from None
        try:
            self.client = Client(address, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise MediaError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        import uuid

        # the running tasks watch it as local workers watch theirs (a scheduler-side flag)
        self.stop_event = Event(f"lkplug-batch-stop-{uuid.uuid4().hex}", client=self.client)
        self.aborted = False
        # the tasks log [input, media seconds] under this topic; the client's thread hands them here
        self.topic = f"lkplug-batch-progress-{uuid.uuid4().hex}"
        self.progress: dict[str, float] = {}  # by input, from its task's start
        self.done: set[str] = set()
        self.inputs: dict[str, str] = {}  # the input of each task, by its key
        self.client.subscribe_topic(self.topic, self._heard)

    def _heard(self, event) -> None:
        name, seconds = event[1]
        if name not in self.done:  # an event may come after its task's result
            self.progress[name] = seconds

    def lost(self, future) -> bool:
        return False  # the scheduler runs a dead worker's tasks again itself

    def submit(self, jobs: list[Job]) -> list:
        jobs = [replace(job, stop_event=self.stop_event.name, progress_topic=self.topic) for job in jobs]
        futures = self.client.map(run_job, jobs, pure=False)
        self.inputs.update((future.key, job.input) for future, job in zip(futures, jobs, strict=True))
        return futures

    def wait(self, futures: list) -> None:
        if self.aborted:  # a second Ctrl-C: drop them (running ones stop by the event, results unseen)
            self.client.cancel([future for future in futures if not future.done()])
        time.sleep(POLL_SECONDS)

    def in_progress(self) -> float:
        return sum(list(self.progress.values()))

    def slots(self) -> int:
        """How many inputs run at once: the threads of the workers the scheduler has now."""
        return max(1, sum(self.client.nthreads().values()))

    def ended(self, job: Job) -> None:
        self.done.add(job.input)
        self.progress.pop(job.input, None)

    def started(self) -> set[str]:
        """The inputs being run now (those whose tasks told their start): a second Ctrl-C cancels
        their tasks, whose results then never come, so the caller counts them as interrupted."""
        return set(list(self.progress))

    def stop(self, futures) -> None:
        """Running tasks stop and discard their outputs (their results come: the media they had done);
        those not started are cancelled, as a queued task would otherwise wait for a free worker
        before it saw the event (with every worker in a long input, minutes). A task that started
        but has not been heard of yet is cancelled too: it sees the event, set first, and discards."""
        self.stop_event.set()
        started = self.started()
        self.client.cancel([f for f in futures if not f.done() and self.inputs[f.key] not in started])

    def abort(self) -> None:
        self.aborted = True  # acted on in wait(): a client is not to be used from a signal handler

    def close(self) -> None:
        self.client.close()


@dataclass
class Summary:
    ok: list[Result] = field(default_factory=list)
    failed: list[Result] = field(default_factory=list)
    skipped: int = 0
    not_run: int = 0  # not started (Ctrl-C, --fail-fast)
    unfinished: list[str] = field(default_factory=list)  # stopped while they ran ("interrupted")
    interrupted: bool = False  # by SIGINT or SIGTERM
    seconds: float = 0.0
    wall: float = 0.0


def run_batch(
    batch: Batch,
    jobs_count: int | None = None,
    cluster: str | None = None,
    skip_existing: bool = False,
    fail_fast: bool = False,
    notify: Callable[[str], None] = lambda line: None,
    status: BatchStatus | None = None,
) -> Summary:
    """Run the batch's inputs; the first SIGINT/SIGTERM stops it (inputs in progress are dropped,
    their outputs discarded), a second SIGINT ends the workers at once. ``notify`` gets a line per
    input (failures always); ``status`` is redrawn as inputs end."""
    todo, skipped = batch.pending(skip_existing)
    # once here, not in every task; a skipped input's too (a killed run's, beside the complete output)
    remove_stale(output for job in batch.jobs for output in job.outputs)
    summary = Summary(skipped=len(skipped))
    started = time.monotonic()
    if batch.repeated:
        notify(
            f"{counted(len(batch.repeated), 'input')} named a file already in the batch (each file runs"
            f" once): {', '.join(batch.repeated[:3])}" + (", ..." if len(batch.repeated) > 3 else "")
        )
    for path, reason in batch.missing:  # no regular file there: that input fails, the batch goes on
        summary.failed.append(Result(path, error=reason))
        notify(f"failed {path}: {reason}")
    if status is not None:
        status.start(len(todo) + len(batch.missing))
        status.update(0, len(summary.failed), 0.0)
    if not todo or fail_fast and summary.failed:
        summary.not_run = len(todo)
        if status is not None:
            status.finish()
        return summary
    if cluster:
        pool = _DaskPool(cluster)
    else:
        workers = max(1, min(jobs_count or os.cpu_count() or 1, len(todo)))
        pool = _LocalPool(workers, todo[0].plugins)
    pending: list = []
    interrupts = 0
    aborted = False
    abandoned = 0.0  # media seconds of the inputs a second Ctrl-C ended (no result comes from them)
    cut_short: set[str] = set()  # ...and those of them whose tasks it cancelled (on a cluster)

    def on_signal(signum, frame):
        nonlocal interrupts, aborted, abandoned, cut_short
        interrupts += 1
        summary.interrupted = True  # the loop below stops the pool (not here: Dask's client is not
        if interrupts > 1 and signum == signal.SIGINT and not aborted:  # safe to call from a handler)
            aborted = True
            abandoned = pool.in_progress()
            cut_short = pool.started()
            pool.abort()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOPS}
    stopping = False
    # local workers get an input only as one of them becomes free, so that after a failure with
    # --fail-fast (or a Ctrl-C) nothing more starts; a Dask scheduler gets them all and is told to
    # stop, unless --fail-fast: then as many as its workers have threads, one more as each ends
    # (given all, its workers ran on through small files before the failure was heard of)
    window = pool.slots() if fail_fast or not cluster else len(todo)
    # a glob's largest inputs first (longest processing time first): a long recording that the glob
    # lists last would otherwise start last and run alone at the end, the other workers idle
    queue = list(todo) if batch.in_order else sorted(todo, key=_input_size, reverse=True)
    job_of: dict = {}
    retried: set[int] = set()  # inputs run again after a worker's death took their pool down
    try:
        while pending or queue:
            if (summary.interrupted or summary.failed and fail_fast) and not stopping:
                stopping = True
                summary.not_run += len(queue)
                queue.clear()
                pool.stop(pending)
            if queue and len(pending) < window:
                batch_now, queue = queue[: window - len(pending)], queue[window - len(pending) :]
                futures = pool.submit(batch_now)
                job_of.update(zip(futures, batch_now, strict=True))
                pending += futures
            if not pending:
                break
            pool.wait(pending)
            finished = [f for f in pending if f.done()]
            pending = [f for f in pending if not f.done()]
            died: dict[int, str] = {}
            if not (stopping or summary.interrupted) and any(pool.lost(f) for f in finished):
                # a worker died: the pool is replaced, the input it had fails, and the others the
                # broken pool dropped (their futures all end with it) run again in the new one, once
                # each (so pools that keep breaking, workers that cannot start, end the batch)
                died = pool.replace()
                finished, pending = finished + pending, []
                again = [
                    f for f in finished
                    if pool.lost(f) and job_of[f].number not in died and job_of[f].number not in retried
                ]  # fmt: skip
                retried.update(job_of[f].number for f in again)
                queue[:0] = [job_of[f] for f in again]
                remove_stale(o for f in finished if pool.lost(f) for o in job_of[f].outputs)
                finished = [f for f in finished if f not in again]
            for future in finished:
                pool.ended(job_of[future])
                result = _result(future, job_of[future], died)
                if result is None and job_of[future].input in cut_short:  # it ran: a second Ctrl-C
                    result = Result(job_of[future].input, interrupted=True)  # cancelled its task
                if result is None or result.stopped:
                    summary.not_run += 1
                    continue
                # after Ctrl-C, a worker that died (a second Ctrl-C kills them) did not fail its input
                if result.interrupted or result.crashed and summary.interrupted:
                    summary.unfinished.append(result.input)
                    summary.seconds += result.seconds  # done, though discarded
                    notify(f"interrupted {result.input} (its outputs removed)")
                    continue
                summary.seconds += result.seconds
                if result.ok:
                    summary.ok.append(result)
                    notify(f"ok {result.input} ({result.seconds:.1f} s)")
                    for warning in result.warnings:  # the file source's own name the file already
                        named = warning.startswith(f"{result.input}:")
                        notify(f"warning: {warning}" if named else f"warning: {result.input}: {warning}")
                else:
                    summary.failed.append(result)
                    notify(f"failed {result.input}: {result.error}")
            if status is not None:
                status.update(len(summary.ok), len(summary.failed), summary.seconds + pool.in_progress())
    finally:
        pool.close()  # a second Ctrl-C while it waits for the workers to stop still ends them now
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # what ended workers left: a second Ctrl-C's (their processes are gone now), and a Dask
        # worker's that died (killed, out of memory) and whose task the scheduler ran again elsewhere
        remove_stale(output for job in batch.jobs for output in job.outputs)
        if (
            stopping or aborted
        ) and cluster:  # cancelled tasks' workers live on and remove theirs only later (a
            # task that had not told its start yet, still setting up, has one too: all are taken)
            remove_temporaries(output for job in todo for output in job.outputs)
        summary.seconds += abandoned
        summary.wall = time.monotonic() - started
        if status is not None:
            status.finish()
    return summary


def _input_size(job: Job) -> int:
    """Bytes of ``job``'s input: the estimate of its work (0 where it cannot be read: it fails soon)."""
    try:
        return os.path.getsize(job.input)
    except OSError:
        return 0


def _result(future, job: Job, died: dict[int, str]) -> Result | None:
    """The worker's Result; None for an input cancelled before it started. ``died``: how the local
    workers that died were ended, by the Job.number each was running."""
    if future.cancelled() or getattr(future, "status", "") == "cancelled":
        return None
    try:
        return future.result()
    except Exception as exc:  # the worker itself died (killed, out of memory)
        if type(exc).__name__ == "CancelledError":  # Dask's, for a task cancelled as it started
            return None
        if job.number in died:
            return Result(job.input, error=f"worker process died: {died[job.number]}", crashed=True)
        error = f"the worker running it failed: {type(exc).__name__}: {exc}"
        return Result(job.input, error=error, crashed=True)


def print_summary(summary: Summary, echo: Callable[[str], None], quiet: bool) -> int:
    """Print the closing lines and return the exit code: 130 if stopped by a signal, else 1 if any
    input failed, else 0."""
    if not quiet:
        speed = summary.seconds / summary.wall if summary.wall > 0 else 0.0
        parts = [f"{len(summary.ok)} ok", f"{len(summary.failed)} failed"]
        if summary.skipped:
            parts.append(f"{summary.skipped} skipped (outputs exist)")
        if summary.unfinished:
            parts.append(f"{len(summary.unfinished)} interrupted")
        if summary.not_run:
            parts.append(f"{summary.not_run} not run")
        echo(
            f"batch: {', '.join(parts)}; {summary.seconds:.1f} s of media in {summary.wall:.1f} s"
            f" ({speed:.1f}x real time)" + (", stopped by signal" if summary.interrupted else "")
        )
        for result in summary.failed:
            echo(f"  failed {result.input}: {result.error}")
        for name in summary.unfinished:  # so that a resumed batch (--skip-existing) is seen to redo them
            echo(f"  interrupted {name}: its outputs removed; run again to redo it")
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def run_cli(
    registry: Registry,
    source: str,
    processors: Sequence[str],
    sinks: Sequence[str],
    *,
    plugins: Sequence[str],
    pace: float | None,
    duration: float | None,
    options: dict,
    explain: bool,
    jobs: int | None,
    cluster: str | None,
    skip_existing: bool,
    fail_fast: bool,
    quiet: bool,
    echo: Callable[[str], None],
    stream,
) -> int:
    """``lkplug run`` on a batch source; returns the exit code."""
    # a Ctrl-C while the batch is set up (its sinks are built once to check them) is noted and acted
    # on after: raised as KeyboardInterrupt inside a plugin's code, it would be that plugin's failure
    # (exit 1, "ctrlc... failed: KeyboardInterrupt") rather than the interruption it is (130)
    if cluster:  # before the inputs are read and checked: the address is wrong whatever they are
        check_cluster(cluster)
        if jobs is not None:  # a cluster runs as many at once as it has workers' threads
            raise UsageError(
                "-j is for local worker processes; with --cluster the scheduler's workers run the files"
            )
    signals: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: signals.append(signum)) for sig in _STOPS}
    try:
        batch = Batch(registry, source, processors, sinks, plugins, pace, duration, options, bool(cluster))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signals:
        echo("lkplug: interrupted")
        return 130  # as print_summary's for a stopped batch
    if explain:
        print(batch.explain(registry))  # the plan goes to stdout, as a single run's
        return 0
    status = None if quiet else BatchStatus(stream, redraw=stream.isatty())

    def notify(line: str) -> None:
        # on a terminal the status line tells the progress: only failures and warnings go above it
        if status is not None and not (status.redraw and line.startswith("ok ")):
            status.print(f"lkplug: {line}")
        elif status is None and line.startswith("failed "):
            echo(f"lkplug: {line}")

    summary = run_batch(batch, jobs, cluster, skip_existing, fail_fast, notify, status)
    return print_summary(summary, lambda line: echo(f"lkplug: {line}"), quiet)
