"""The ``lkplug`` command line: ``list``, ``inspect``, ``run``, plus commands that plugins add.

Errors are one line on stderr (the traceback only with ``--debug``). Exit codes: 0 ok, 1 runtime
error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from .components import FLOAT_LIMIT, RunContext
from .errors import LkplugError, UsageError, interruption
from .manager import scan_once
from .registry import ROLES, Registry

if TYPE_CHECKING:
    from .engine import Pipeline

# What `run` needs (asyncio, numpy, the engine, batches, fan-in and fan-out) is imported where it is
# used, so `lkplug --help`, `list` and `inspect` start without it.

EXIT_INTERRUPTED = 130
ESCALATE_SECONDS = 2.0  # how long the event loop may leave a first Ctrl-C untaken (a stage blocks it)
FINAL_SECONDS = 0.5  # how long a cancelled run may take to close its outputs before they are closed for it
EPILOG = """\b
Specs are NAME, NAME:VALUE or NAME:KEY=VALUE,KEY=VALUE:
  file:in.flac   gain:db=-6   resample:rate=16000,quality=vhq   wav:out.wav
"""


def plugin_option(command):
    return click.option(
        "-p",
        "--plugin",
        "plugins",
        multiple=True,
        metavar="MODULE|FILE.py|no:NAME",
        help="Load hooks from a module or a .py file; no:NAME disables the plugin NAME. Repeatable.",
    )(command)


def debug_option(command):
    # read by main() from argv; declared here so --help documents it and click accepts it
    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(command)


def load_registry(plugins) -> Registry:
    registry = Registry.load(plugins)
    failed = [info for info in registry.broken() if info.origin != "entry point"]
    if failed:
        info = failed[0]
        raise UsageError(f"cannot load plugin {info.name!r} ({info.origin}): {info.error}")
    return registry


class CommandGroup(click.Group):
    """The ``lkplug`` group. Besides ``add_command``, a plugin may name a command by where it lives
    (``add_lazy_command("worker", "lkplug_livekit.worker:worker_command", "Run a chain ...")``): its
    module, and what that imports, loads only when the command runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str | None]] = {}

    def add_lazy_command(self, name: str, target: str, summary: str | None = None) -> None:
        """Add the click command ``target`` (``"module:attribute"``) as ``name``, imported on use.
        ``summary`` (the command's help up to its first blank line) lets ``lkplug --help`` list it
        without importing it."""
        if name not in self.commands:
            self.lazy_commands[name] = (target, summary)

    def list_commands(self, ctx) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx, name: str):
        target, _ = self.lazy_commands.pop(name, (None, None))
        if target is not None:
            module, _, attribute = target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter) -> None:
        """click's listing, with a lazy command's ``summary`` shortened as click shortens a help text."""
        rows = []
        for name in self.list_commands(ctx):
            summary = self.lazy_commands.get(name, (None, None))[1]
            command = None if summary is not None else self.get_command(ctx, name)
            if summary is not None or (command is not None and not command.hidden):
                rows.append((name, summary, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _, _ in rows)
            with formatter.section("Commands"):
                # a lazy command's summary shortened by a stand-in command, as click does for the real one
                formatter.write_dl(
                    [
                        (name, (command or click.Command(name, help=text)).get_short_help_str(limit))
                        for name, text, command in rows
                    ]
                )


@click.group(
    cls=CommandGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n\b\n  lkplug list\n  lkplug inspect gain\n"
    "  lkplug run --source tone:440 --proc gain:db=-6 --sink wav:out.wav\n"
    "  lkplug run --source file:in.flac --proc resample:rate=16000 --proc remix:1 --sink wav:out.wav",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, param, value: _print_version(ctx, value),
    help="Show the version and exit.",
)
def cli():
    """Process raw audio and video from LiveKit rooms and media files with plugins.

    A run reads frames from one source, passes them through processors in order and hands every
    result to each sink. Sources, processors and sinks come from plugins: `lkplug list` shows what
    is installed, `lkplug inspect NAME` what a component takes.
    """


def _print_version(ctx, value) -> None:
    """``--version``, as click's own option prints it; the version is read only when asked."""
    if value and not ctx.resilient_parsing:
        from . import __version__

        click.echo(f"lkplug, version {__version__}")
        ctx.exit()


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@plugin_option
@debug_option
def list_command(as_json, plugins, debug):
    """List every source, processor and sink, and plugins that failed to load."""
    import json  # here, not at the top: its regex compiles at import (~3 ms) and a run needs none

    registry = Registry.load(plugins)
    entries = [e for role in ROLES for e in sorted(registry.entries(role), key=lambda e: e.name)]
    broken = [
        {"plugin": i.name, "distribution": i.dist, "version": i.version, "origin": i.origin, "error": i.error}
        for i in registry.broken()
    ]
    duplicates = [
        {"name": g[0].name, "role": g[0].role, "providers": [e.plugin.provider for e in g]}
        for g in registry.duplicates()
    ]
    if as_json:
        rows = [
            {
                "name": e.name,
                "role": e.role,
                "plugin": e.plugin.name,
                "distribution": e.plugin.dist,
                "version": e.plugin.version,
                "summary": e.component.summary,
            }
            for e in entries
        ]
        click.echo(json.dumps({"components": rows, "broken": broken, "duplicates": duplicates}, indent=2))
        return
    # PLUGIN is the name `-p no:NAME` takes (the distribution's name works too)
    plugin_width = max([len(e.plugin.name) for e in entries] + [6])
    name_width = max([len(e.name) for e in entries] + [4])
    provider_width = max([len(e.plugin.provider) for e in entries] + [8])
    header = ("PLUGIN", "NAME", "ROLE", "PROVIDER")
    widths = (plugin_width, name_width, 9, provider_width)
    click.echo("  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)) + "  SUMMARY")
    for e in entries:
        plugin, provider, summary = e.plugin.name, e.plugin.provider, e.component.summary
        click.echo(
            f"{plugin:<{plugin_width}}  {e.name:<{name_width}}  {e.role:<9}  "
            f"{provider:<{provider_width}}  {summary}"
        )
    for item in broken:
        where = f"{item['distribution']} {item['version']}" if item["distribution"] else item["origin"]
        click.echo(f"\nbroken plugin {item['plugin']!r} ({where}): {item['error']}")
    for item in duplicates:
        click.echo(f"\nduplicate {item['role']} {item['name']!r}: {' and '.join(item['providers'])}")


@cli.command("inspect")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@plugin_option
@debug_option
def inspect_command(name, as_json, plugins, debug):
    """Show a component's parameters, frame contract and the package that provides it."""
    import json

    registry = load_registry(plugins)
    entries = registry.find(name)
    if as_json:
        click.echo(json.dumps([_describe(e) for e in entries], indent=2))
        return
    for entry in entries:
        click.echo(_inspect_text(entry))


def _describe(entry) -> dict:
    component = entry.component
    return {
        "name": component.name,
        "role": entry.role,
        "summary": component.summary,
        "plugin": entry.plugin.name,
        "distribution": entry.plugin.dist,
        "version": entry.plugin.version,
        "positional": component.positional,
        "converts": list(component.converts),
        "params": [
            {
                "name": p.name,
                "type": p.type.__name__,
                "default": None if p.required else p.default,
                "required": p.required,
                "range": p.range_text or None,
                "help": p.help,
            }
            for p in component.params
        ],
        "accepts": {kind: c.describe() for kind, c in component.accepts.items()},
        "emits": component.emits,
    }


def _inspect_text(entry) -> str:
    info = _describe(entry)
    lines = [
        f"{info['name']} ({info['role']})",
        f"  {info['summary']}",
        "",
        f"Provided by:  plugin {info['plugin']!r}, {entry.plugin.provider}",
    ]
    usage = f"{info['name']}:KEY=VALUE,..."
    if info["positional"]:
        usage = f"{info['name']}:{info['positional'].upper()}  or  " + usage
    lines.append(f"Spec:         {usage}")
    if info["converts"]:
        lines.append(f"Converts:     {', '.join(info['converts'])} (inserted automatically where needed)")
    lines += ["", "Parameters:"]
    if not info["params"]:
        lines.append("  (none)")
    width = max([12] + [len(p["name"]) for p in info["params"]])
    for p in info["params"]:
        default = "required" if p["required"] else f"default {p['default']!r}"
        lines.append(
            f"  {p['name']:<{width}} {p['type']:<6} {default:<22} {p['range'] or '':<22} {p['help']}"
        )
    if entry.role != "source":
        lines += ["", "Accepts:"]
        lines += [f"  {kind}: {text}" for kind, text in info["accepts"].items()] or ["  (nothing)"]
    lines += ["", "Emits:", f"  {info['emits'] or 'frames (format known once it runs)'}", ""]
    return "\n".join(lines)


def _notifier(quiet: bool):
    if quiet:
        return lambda message: None
    return lambda message: click.echo(f"lkplug: {message}", err=True)


class Seconds(click.ParamType):
    """A media duration: a finite number of seconds above 0 (``nan``, ``inf`` and overflowing
    values are usage errors, not failures in the middle of a run)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            seconds = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (math.isfinite(seconds) and 0 < seconds <= FLOAT_LIMIT):
            self.fail(f"{value!r}: expected a number of seconds in (0, {FLOAT_LIMIT:g}]", param, ctx)
        return seconds


def _parse_pace(text: str) -> float | None | str:
    text = text.strip().lower()
    if text in ("auto", "max"):
        return text
    try:
        value = float(text[:-1] if text.endswith("x") else text)
    except ValueError:
        raise click.BadParameter("expected auto, max, or a speed such as 1x or 2x") from None
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter("the speed must be a finite number above 0")
    return value


BATCH_OPTIONS = ("jobs", "fail_fast", "skip_existing", "cluster")


def batch_options(command):
    """-j, --fail-fast, --skip-existing and --cluster: for a batch (the file source given a glob or
    an @list), run by lkplug.batch."""
    options = [
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=1),
            metavar="N",
            help="Batch: run N files at once in worker processes [default: the number of cores]; not"
            " with --cluster.",
        ),
        click.option("--fail-fast", is_flag=True, help="Batch: stop at the first file that fails."),
        click.option(
            "--skip-existing", is_flag=True, help="Batch: skip inputs whose outputs exist (to resume)."
        ),
        click.option(
            "--cluster",
            metavar="tcp://HOST:8786",
            help="Batch: run the files on a Dask scheduler's workers (pip install 'lkplug[cluster]').",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command("run")
@click.option(
    "--source",
    "sources",
    required=True,
    multiple=True,
    metavar="SPEC",
    help="Where frames come from, e.g. file:in.flac or tone:440. Repeat (or track:*) with --proc mix"
    " to combine streams into one.",
)
@click.option(
    "--proc",
    "procs",
    multiple=True,
    metavar="SPEC",
    help="A processor, e.g. gain:db=-6. Repeat; applied in order.",
)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    metavar="SPEC",
    help="Where results go, e.g. wav:out.wav. Repeat: each sink gets every frame.",
)
@click.option(
    "--pace",
    default="auto",
    metavar="auto|max|1x|2x",
    help="Speed: max = as fast as possible; auto = real time only when a sink is live.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print the negotiated plan, converters included, and exit without running.",
)
@click.option(
    "-t",
    "--duration",
    type=Seconds(),
    metavar="SECONDS",
    help="Stop after this much media, like ffmpeg -t (e.g. to record a live track for 10 s).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary; errors only.")
@batch_options
@plugin_option
@debug_option
def run_command(sources, procs, sinks, pace, explain, duration, quiet, plugins, debug, **plugin_options):
    """Run SOURCE through PROCs into SINKs.

    \b
    lkplug run --source file:in.flac --proc gain:db=-6 --proc resample:rate=16000 \\
               --proc remix:channels=1 --sink wav:out.wav
    lkplug run --source tone:freq=440,duration=10 --sink wav:tone.wav --sink null
    lkplug run --source file:clip.mp4 --proc scale:height=360 --sink file:small.mp4
    lkplug run --source 'file:rec/**/*.m4a' --proc resample:rate=16000 \\
               --sink 'wav:out/{relpath}/{stem}.wav' -j 2 --skip-existing

    A SPEC is NAME, NAME:VALUE or NAME:KEY=VALUE,...; `lkplug list` shows every component and
    `lkplug inspect NAME` its parameters. Converters (sample rate, channels, sample format, frame
    size, pixel format) are inserted where a stage needs them; --explain shows where. Ctrl-C stops
    the source, flushes and closes every output. A file source given a glob or @LIST (a file of
    paths) is a batch: a run per input, the sinks' paths filled per input ({stem}, {name}, {ext},
    {dir}, {relpath}), outputs renamed into place when complete.
    """
    from .batch import batch_source
    from .batch import run_cli as run_batch_cli
    from .fanin import fans_in

    pace_value = _parse_pace(pace)
    if not sinks and not explain:
        raise UsageError("give at least one --sink (e.g. --sink wav:out.wav, or --sink null)")
    batch = {name: plugin_options.pop(name) for name in BATCH_OPTIONS}
    registry = load_registry(plugins)
    # many streams into one chain (a room's tracks, several files): --proc mix combines them
    fan_in = len(sources) > 1 or any(fans_in(registry, p) for p in procs)
    if not fan_in and batch_source(registry, sources[0], sinks):  # file:rec/*.m4a, file:@list, {stem}
        # before the signal watch: a batch takes Ctrl-C itself (its workers stop and discard)
        code = run_batch_cli(
            registry,
            sources[0],
            procs,
            sinks,
            plugins=plugins,
            pace=pace_value if isinstance(pace_value, float) else None,
            duration=duration,
            options=plugin_options,
            explain=explain,
            quiet=quiet,
            echo=lambda line: click.echo(line, err=True),
            stream=sys.stderr,
            **batch,
        )
        sys.exit(code)
    if batch["cluster"]:
        raise UsageError("--cluster runs a batch: give the file source a glob or @list (file:rec/*.m4a)")
    with SignalWatch() as watch:
        _run(
            watch, sources, fan_in, procs, sinks, pace_value, explain, duration, quiet, registry,
            plugin_options, skip_existing=batch["skip_existing"],
        )  # fmt: skip


def _run(
    watch, sources, fan_in, procs, sinks, pace_value, explain, duration, quiet, registry, plugin_options,
    skip_existing=False,
):  # fmt: skip
    import asyncio

    from .engine import Pipeline, build
    from .fanin import mix_pipeline
    from .fanout import FanOut
    from .outputs import held_outputs
    from .progress import StatusLine, summary
    from .templates import fill

    context = RunContext(options=plugin_options, notify=_notifier(quiet))
    if fan_in:
        if skip_existing:
            raise UsageError("--skip-existing is for file inputs (a file, a glob or an @list), not a mix")
        pipeline = mix_pipeline(sources, procs, sinks, registry, context)
    else:
        built_source = build(registry, "source", sources[0])
        if getattr(built_source.obj, "fans_out", False):
            if skip_existing:
                raise UsageError(
                    "--skip-existing is for file inputs (a file, a glob or an @list), not a fan-out"
                )
            pipeline = FanOut(built_source, procs, sinks, registry, context=context)
        else:
            built_procs = [build(registry, "processor", p) for p in procs]
            built_sinks = [build(registry, "sink", fill(s, {})) for s in sinks]  # one input: no fields
            if skip_existing and not explain and _all_written(built_sinks, quiet):
                return
            pipeline = Pipeline(built_source, built_procs, built_sinks, registry, context=context)
    built_source = pipeline.source
    if pace_value == "auto":
        # a file published to a room goes at real time; a live source sets its own pace
        live = getattr(built_source.obj, "live", False)
        pipeline.pace = 1.0 if pipeline.realtime_sinks and not live else None
    elif pace_value != "max":
        pipeline.pace = pace_value
    pipeline.duration = duration
    if explain:
        click.echo(pipeline.explain())
        return
    quiet_status = quiet or not sys.stderr.isatty()
    status = None if quiet_status else StatusLine(sys.stderr, total=duration)
    # a fan-out's tracks end one by one, each renaming its own outputs; one pipeline's wait for its end
    held = contextlib.nullcontext() if isinstance(pipeline, FanOut) else held_outputs()
    with held as outputs:
        watch.outputs = outputs
        try:
            report = asyncio.run(_run_with_signals(pipeline, status, watch))
        except BaseException as exc:
            if outputs is not None:
                _settle_failed(outputs, exc, live=getattr(pipeline.source.obj, "live", False))
            raise
        if outputs is not None:
            outputs.commit()
    for warning in report.warnings:
        click.echo(f"lkplug: warning: {warning}", err=True)
    if not quiet:
        live = getattr(built_source.obj, "live", False)
        click.echo(f"lkplug: {summary(report, live, getattr(pipeline, 'streams', None))}", err=True)
    if report.stopped:
        sys.exit(EXIT_INTERRUPTED)


def _settle_failed(outputs, exc: BaseException, live: bool) -> None:
    """A single run that raised. Interrupted (a second Ctrl-C), its outputs are valid files and get
    their final names. Failed, none does (``--skip-existing`` would take it as done: the input can
    be run again), unless the source is live (a room's track: a recording cannot be made again,
    and what it holds is as valid as after a Ctrl-C); the error line says where a partial output
    is kept. Raises the error to report."""
    if isinstance(exc, (Interrupted, *_interruptions())):
        outputs.commit()
        return
    kept = outputs.commit() if live else outputs.keep_partial()
    if not kept:
        return
    where = ", ".join(str(path) for path in kept)
    error = PartialOutput(f"{_one_line(exc)}; what was written is kept in {where}")
    error.exit_code = getattr(exc, "exit_code", 1)
    raise error from exc


class PartialOutput(LkplugError):
    """A run failed after writing part of its outputs (kept under their temporary names)."""


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if isinstance(exc, LkplugError) else f"unexpected {type(exc).__name__}: {message}"


def _all_written(built_sinks, quiet) -> bool:
    """--skip-existing on one input, as a batch of one: True (and said) when every output exists."""
    outputs = [str(path) for sink in built_sinks for path in getattr(sink.obj, "writes", ())]
    if not outputs or not all(os.path.exists(path) for path in outputs):
        return False
    if not quiet:
        exist = "already exists" if len(outputs) == 1 else "already exist"
        click.echo(f"lkplug: skipped: {', '.join(outputs)} {exist} (--skip-existing)", err=True)
    return True


@cli.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="Where to write it [./lkplug-NAME]."
)
def new_plugin_command(name, directory):
    """Write a ready plugin package: pyproject with the entry point, one processor, a passing test."""
    from .scaffold import plugin_names, write_plugin

    root = write_plugin(name, directory, Registry.load())
    click.echo(f"wrote {root}/ with the processor {plugin_names(name)['name']!r}; next:")
    click.echo(f"  cd {root} && pip install -e '.[test]' && pytest && lkplug list")


def _ignore(signum, frame) -> None:
    """The Python-level handler: the watcher thread has the signal already (see SignalWatch)."""


class Interrupted(LkplugError):
    """The run was ended by a second signal (or a first one that a blocked stage kept waiting)."""

    exit_code = EXIT_INTERRUPTED


class SignalWatch:
    """Ctrl-C and SIGTERM, taken on a thread of their own, so they work whatever a stage does.

    The first asks the pipeline to stop: the source ends, chains flush, sinks close. A second one,
    or a first that the event loop has not taken within ``ESCALATE_SECONDS`` (a stage blocks it),
    cancels the run; if that has not ended it within ``FINAL_SECONDS`` (the stage still blocks), the
    sinks are closed from this thread (WAV headers, MP4 trailers) and the process exits with 130.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.pipeline = self.loop = self.task = None
        self.outputs = None  # the run's held outputs (lkplug.outputs), renamed when it ends
        self.escalated: str | None = None
        self.finished = threading.Event()  # the run returned: nothing left to do here
        self._heard = threading.Event()  # the event loop took the stop request
        self._thread = threading.Thread(target=self._watch, name="lkplug-signals", daemon=True)

    def __enter__(self) -> SignalWatch:
        # Python's C-level handler writes each signal's number to the wakeup fd at once, in whichever
        # thread the kernel picked; the Python-level handler (a no-op) would wait for the main thread
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._handlers = {sig: signal.signal(sig, _ignore) for sig in self.SIGNALS}
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.finished.set()
        try:  # wake the watcher now rather than at its next poll (signal numbers are never 0)
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full of signals: the watcher is awake anyway
            pass
        self._thread.join()
        signal.set_wakeup_fd(self._old_fd)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        os.close(self._read)
        os.close(self._write)

    def attach(self, pipeline, loop, task) -> None:
        self.pipeline, self.loop, self.task = pipeline, loop, task

    def _next_signal(self) -> int | None:
        ready, _, _ = select.select([self._read], [], [], 0.05)
        if not ready:
            return None
        data = os.read(self._read, 1)
        return (data[0] or None) if data else None  # 0: __exit__ woke the watcher

    def _watch(self) -> None:
        count, deadline = 0, None
        while not self.finished.is_set():
            signum = self._next_signal()
            if signum is not None:
                count += 1
                if count == 1:
                    deadline = time.monotonic() + ESCALATE_SECONDS
                    self._soon(self._stop)
                else:
                    self._escalate()
            elif deadline is not None and not self._heard.is_set() and time.monotonic() > deadline:
                self._escalate()

    def _soon(self, callback) -> bool:
        if self.loop is None:  # nothing runs yet, so nothing to finalise
            click.echo("lkplug: interrupted", err=True)
            os._exit(EXIT_INTERRUPTED)
        try:
            self.loop.call_soon_threadsafe(callback)
            return True
        except RuntimeError:  # the loop has closed: the run is over
            return False

    def _stop(self) -> None:
        self._heard.set()
        self.pipeline.stop()

    def _escalate(self) -> None:
        if self.escalated is not None:
            return
        from .chain import Running  # imported already: a run is going on

        running = Running.built
        what = running.who if running is not None else "the run"
        self.escalated = f"stopped by a signal while {what} was still running"
        self._heard.set()
        self.pipeline.drop_backlog()  # outputs close with what they have, now
        if self._soon(self.task.cancel) and self.finished.wait(FINAL_SECONDS):
            return
        if self.finished.is_set():
            return
        # the loop is blocked: close the outputs from here (one it is closing is waited for)
        closed = self.pipeline.finalize_now(FINAL_SECONDS)
        if self.outputs is not None:
            with contextlib.suppress(OSError):  # a rename that fails leaves the .part, still valid
                self.outputs.commit()
        also = f"; closed {', '.join(closed)}" if closed else ""
        click.echo(f"lkplug: error: {self.escalated}{also}", err=True)
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


async def _run_with_signals(pipeline: Pipeline, status, watch: SignalWatch):
    """Run with ``watch`` handling the signals: a first one stops cleanly, a second ends it now."""
    import asyncio

    watch.attach(pipeline, asyncio.get_running_loop(), asyncio.current_task())
    try:
        if status is not None:
            status.start(pipeline.source.obj)
        return await pipeline.run(status.update if status else None)
    except asyncio.CancelledError:
        if watch.escalated is None:
            raise
        raise Interrupted(watch.escalated) from None
    finally:
        if status is not None:
            status.finish()


def make_cli() -> click.Group:
    """The CLI with the commands (``lkplug_register_commands``) and ``run`` options
    (``lkplug_run_options``) that installed plugins add."""
    registry = Registry.load()
    registry.register_commands(cli)
    known = {param.name for param in run_command.params}
    run_command.params += [option for option in registry.run_options() if option.name not in known]
    return cli


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("LKPLUG_DEBUG"))
    if debug:  # plugins' and SDKs' log lines too (without it, plugins keep them quiet)
        import logging

        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        with scan_once():  # make_cli() and the command load the plugins: read entry points once
            group = make_cli()
            # what click's own main() does, less its handling of a Ctrl-C (a blank line on stderr,
            # then Abort): an interruption is one line, below, wherever it comes
            with group.make_context("lkplug", list(args)) as ctx:
                group.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version: they have said what they had to
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LkplugError as exc:
        _report(exc, debug)
        sys.exit(exc.exit_code)
    except (*_interruptions(), Exception) as exc:
        # a Ctrl-C may come wrapped, e.g. by Python when it lands while a module defines a dataclass
        if not isinstance(exc, _interruptions()) and not interruption(exc):
            _report(exc, debug)  # a bug, ours or a plugin's: still one line unless --debug
            sys.exit(1)
        click.echo("lkplug: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _interruptions() -> tuple[type[BaseException], ...]:
    """KeyboardInterrupt, and asyncio's CancelledError when a command imported asyncio (a run did)."""
    asyncio = sys.modules.get("asyncio")
    return (KeyboardInterrupt, asyncio.CancelledError) if asyncio else (KeyboardInterrupt,)


def console() -> None:
    """The ``lkplug`` command: ``main()``, then an exit that skips the interpreter's teardown. By then
    every output is closed; what the teardown would still do is stop native runtimes that plugins
    started, and an SDK's async runtime can abort the process there (seen: a Rust panic after a
    finished recording, turning exit 0 into -6)."""
    # numpy's OpenBLAS starts a thread per core when it is imported, and they spin a while: 0.06-0.1 s
    # of CPU per run (a 10-minute file job: 0.96 -> 0.86 s). No built-in stage multiplies matrices; a
    # plugin that does can have them back with OPENBLAS_NUM_THREADS in the environment
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report(exc: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc)
    click.echo(f"lkplug: error: {_one_line(exc)}", err=True)
