"""``lkplug worker``: a chain as a LiveKit Agents worker, run by the official ``livekit-agents``
framework (its ``AgentServer``, job processes, load reporting and draining).

The worker registers with the LiveKit server, which dispatches a job to it for every room (or, with
``--per publisher``, for every participant who publishes) and balances jobs over all the workers that
registered. Each job runs the chain in its room with the job's own participant: per room, the source
is a selector within the room (``track:*`` fans out as in ``lkplug run``); per publisher, the job's
participant is the source. Sink templates take ``{room}`` and ``{job}`` besides the source's fields.

A room job ends when the last participant other than agents has left; a publisher job when its
publisher leaves. SIGTERM (or Ctrl-C) drains: the server is told the worker is full, running jobs go
on until they end or ``--drain-timeout`` passes, then the rest are stopped with their outputs closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import logging
import signal
import sys
from functools import partial

import click

from lkplug import LkplugError, MediaError, UsageError, templates
from lkplug.components import RunContext
from lkplug.engine import Pipeline, build
from lkplug.fanout import FanOut, make_sink_folders, render
from lkplug.registry import Registry
from lkplug.spec import parse_spec

from .connection import SHARED_KEY, RoomConnection

PER_CHOICES = ("room", "publisher")
DEFAULT_SOURCE = {"room": "track:*", "publisher": "track:{identity}"}
FINISH_KEY = "lkplug.finish"  # in the job process's userdata: stops the job's chain


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What every job needs; pickled into the framework's job processes."""

    source: str
    procs: tuple[str, ...]
    sinks: tuple[str, ...]
    per: str = "room"
    plugins: tuple[str, ...] = ()
    quiet: bool = False


def job_fields(settings: WorkerSettings, room: str, job: str, identity: str | None) -> dict[str, str]:
    fields = {"room": room, "job": job}
    if settings.per == "publisher":
        fields["identity"] = identity or ""
    return fields


def fill(template: str, fields: dict[str, str]) -> str:
    """Fill the job's own fields into a template, leaving the source's (``{identity}`` of a fan-out)
    for the fan-out to fill per stream."""
    return templates.fill_some(
        template, {name: render("{x}", {"x": value}) for name, value in fields.items()}
    )


class JobRoomConnection(RoomConnection):
    """The job's room, joined by the framework with the token the server minted for this job: the
    track sources and sinks of the chain share it, and the framework disconnects it."""

    def __init__(self, room, notify):
        super().__init__({"room": room.name, "identity": room.local_participant.identity}, notify)
        self.room = room

    def check(self) -> None:
        pass

    def describe(self) -> str:
        return f"room {self.room_name} as {self.identity!r} (an Agents job)"

    async def acquire(self):
        return self.room

    async def release(self) -> None:
        pass  # the framework leaves the room when the job ends


def job_source(settings: WorkerSettings, registry: Registry, fields: dict[str, str]):
    """The ``--source`` of a job. Per publisher, the selector's participant is the job's, taken as it
    is (not made safe for a file name as in templates, and never a glob)."""
    if settings.per != "publisher":
        return build(registry, "source", fill(settings.source, fields))
    spec = fill(settings.source, {k: v for k, v in fields.items() if k != "identity"})
    source = build(registry, "source", spec.replace("{identity}", "identity"))
    source.obj.selector = dataclasses.replace(source.obj.selector, identity=glob.escape(fields["identity"]))
    source.label = spec.replace("{identity}", fields["identity"])  # messages name the participant
    return source


def build_chain(
    settings: WorkerSettings,
    registry: Registry,
    fields: dict[str, str],
    context: RunContext,
    make_dirs: bool = True,
):
    """The job's pipeline: a fan-out over the room's streams (``track:*``) or one pipeline."""
    source = job_source(settings, registry, fields)
    sinks = [fill(t, fields) for t in settings.sinks]
    if getattr(source.obj, "fans_out", False):  # output folders (rec/{room}/) made per stream
        return FanOut(source, settings.procs, sinks, registry, context=context, make_folders=make_dirs)
    # one stream, not a fan-out: {room} and {job} are all it fills; a field left is refused
    built_sinks = [build(registry, "sink", templates.fill(s, {})) for s in sinks]
    if make_dirs:
        make_sink_folders(built_sinks)
    return Pipeline(
        source,
        [build(registry, "processor", p) for p in settings.procs],
        built_sinks,
        registry,
        context=context,
    )


def check_settings(settings: WorkerSettings, registry: Registry) -> None:
    """Fail at start, not at the first job: unknown components, bad parameters, bad templates."""
    example = {"room": "room", "job": "AJ_job", "identity": "identity"}
    fields = job_fields(settings, example["room"], example["job"], example["identity"])
    source_spec = fill(settings.source, fields)
    if "{" in source_spec:
        raise UsageError(f"--source {settings.source}: only {{identity}} (per publisher) can be filled in")
    if settings.per == "publisher" and not parse_spec(source_spec).name == "track":
        raise UsageError("--per publisher: the source is the job's participant, e.g. track:{identity}")
    build_chain(settings, registry, fields, RunContext(), make_dirs=False)


async def run_job(settings: WorkerSettings, ctx) -> None:
    """The framework's job entrypoint (in a job process or thread): run the chain in the job's room
    until it ends by itself or the job is shut down, then close every output."""
    from livekit import rtc
    from livekit.agents import AutoSubscribe

    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)  # the track source subscribes
    room = ctx.room
    job = ctx.job
    label = f"job {job.id} (room {room.name})"
    say = (
        (lambda message: None)
        if settings.quiet
        else (lambda message: print(f"lkplug: {label}: {message}", file=sys.stderr, flush=True))
    )
    identity = job.participant.identity if job.HasField("participant") else None
    registry = Registry.load(settings.plugins)
    context = RunContext(notify=say)
    context.shared[SHARED_KEY] = JobRoomConnection(room, say)
    try:
        pipeline = build_chain(settings, registry, job_fields(settings, room.name, job.id, identity), context)
    except LkplugError as exc:
        say(f"failed: {exc}")
        ctx.shutdown("the chain could not be built")
        return
    say(f"started as {room.local_participant.identity}")
    task = asyncio.ensure_future(pipeline.run())

    def left(*_):
        agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        if settings.per == "room" and not any(p.kind != agent for p in room.remote_participants.values()):
            say("everyone left the room")
            asyncio.ensure_future(stop(pipeline, task))

    room.on("participant_disconnected", left)

    async def finish() -> None:
        if not task.done():
            say("stopping")
        await stop(pipeline, task)

    ctx.proc.userdata[FINISH_KEY] = finish  # for session_end, when the job is shut down
    try:
        report = await task
        say(f"ended after {report.seconds:.1f} s of media")
    except LkplugError as exc:
        say(f"failed: {exc}")
    ctx.shutdown("the chain ended")


async def stop(pipeline, task: asyncio.Future) -> None:
    """Stop the chain and wait until its outputs are closed. Asked again each second: on Python
    3.11 ``asyncio.wait_for`` swallows a cancellation that arrives as the awaited event fires (the
    track source waits for room events that way), and one stop request can be lost."""
    while not task.done():
        pipeline.stop()
        await asyncio.wait({task}, timeout=1.0)
    await asyncio.gather(task, return_exceptions=True)


async def session_end(ctx) -> None:
    """The framework calls this when a job is shut down (worker draining or closing, room gone),
    before it leaves the room: the chain stops while its tracks are still there, and every output
    is closed."""
    finish = ctx.proc.userdata.pop(FINISH_KEY, None)
    if finish is not None:
        await finish()


async def accept(request) -> None:
    await request.accept(name="lkplug", identity=f"lkplug-{request.job.id}")


class OneLine(logging.Formatter):
    """The framework's log records as one line each, the exception's message instead of its traceback
    (``--debug`` shows those)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f": {record.exc_info[1]}"
        return f"lkplug: {record.name} {record.levelname.lower()}: {' '.join(message.split())}"


def job_count_load(max_jobs: int, server) -> float:
    """The worker's load as its share of ``--max-jobs`` (1.0: full)."""
    return len(server.active_jobs) / max_jobs


@click.command("worker")
@click.option(
    "--source",
    metavar="SPEC",
    help="Per room: a selector in the room [track:*]; per publisher: "
    "the job's participant [track:{identity}].",
)
@click.option(
    "--proc", "procs", multiple=True, metavar="SPEC", help="A processor, e.g. gain:db=-6. Repeatable."
)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="An output; templates take {room}, {job} and the source's fields ({identity}, ...).",
)
@click.option(
    "--per",
    type=click.Choice(PER_CHOICES),
    default="room",
    show_default=True,
    help="A job for every room, or for every participant who publishes.",
)
@click.option(
    "--agent-name",
    default="",
    help="Explicit dispatch only: the name that dispatches and "
    "tokens' room configurations ask for. Without it the server dispatches to every room.",
)
@click.option(
    "--load-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.7,
    show_default=True,
    help="The worker takes no new job while its load is at or above this.",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(min=0),
    default=0,
    help="Load = running jobs / N, instead of the machine's CPU use (0: use the CPU).",
)
@click.option(
    "--drain-timeout",
    type=click.IntRange(min=1),
    default=1800,
    show_default=True,
    help="On SIGTERM: seconds that running jobs may go on before they are stopped.",
)
@click.option(
    "--executor",
    type=click.Choice(("process", "thread")),
    default="process",
    show_default=True,
    help="Run each job in a process of its own (isolated) or a thread of the worker (light).",
)
@click.option(
    "--idle-processes",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Job processes kept started ahead of jobs (faster dispatch, more memory).",
)
@click.option("--http-port", type=int, default=0, help="The framework's health check port (0: any free).")
@click.option("--url", envvar="LIVEKIT_URL", help="LiveKit server URL [env LIVEKIT_URL].")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", help="API key [env LIVEKIT_API_KEY].")
@click.option(
    "--api-secret",
    envvar="LIVEKIT_API_SECRET",
    help="API secret [env LIVEKIT_API_SECRET] (prefer the env or --api-secret-file: ps shows argv).",
)
@click.option(
    "--api-secret-file",
    type=click.File("r"),
    callback=lambda ctx, param, file: file.read().strip() if file is not None else None,
    help="Read the API secret from this file.",
)
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
@click.option(
    "-p",
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE|FILE.py|no:NAME",
    help="Load hooks from a module or a .py file. Repeatable.",
)
@click.option("--debug", is_flag=True, help="Show the full traceback on errors, and the framework's log.")
def worker_command(
    source,
    procs,
    sinks,
    per,
    agent_name,
    load_threshold,
    max_jobs,
    drain_timeout,
    executor,
    idle_processes,
    http_port,
    url,
    api_key,
    api_secret,
    api_secret_file,
    quiet,
    plugins,
    debug,
):
    """Run a chain in every room (or for every publisher) as a LiveKit Agents worker.

    \b
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    lkplug worker --source 'track:*' --proc gain:db=-6 --sink 'wav:rec/{room}/{identity}.wav'
    lkplug worker --per publisher --proc apm --sink 'track:{identity}-clean'
    lkplug worker --agent-name cleaner ...   # only rooms that ask for 'cleaner'

    Start as many as the load needs, on any machines: the LiveKit server dispatches each room to one
    of them, by load, and re-dispatches a room whose worker died. SIGTERM drains (--drain-timeout).
    """
    from lkplug.cli import load_registry

    if not url:
        raise UsageError("no LiveKit server: give --url or set LIVEKIT_URL (e.g. ws://127.0.0.1:7880)")
    api_secret = api_secret or api_secret_file
    if not (api_key and api_secret):
        raise UsageError(
            "no credentials: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET (a worker mints job "
            "tokens with neither; the server does, but it needs the key to register)"
        )
    settings = WorkerSettings(
        source or DEFAULT_SOURCE[per], tuple(procs), tuple(sinks), per, tuple(plugins), quiet
    )
    check_settings(settings, load_registry(plugins))
    say = (lambda message: None) if quiet else (lambda message: click.echo(f"lkplug: {message}", err=True))
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s") if debug else OneLine()
    )
    logging.getLogger().addHandler(handler)
    logging.getLogger("livekit").setLevel(logging.INFO if debug else logging.ERROR)  # the SDK's chatter
    # the framework's warnings matter (cannot reach the server, retrying; at full capacity)
    logging.getLogger("livekit.agents").setLevel(logging.INFO if debug else logging.WARNING)

    from livekit.agents import AgentServer, JobExecutorType, WorkerType

    server = AgentServer(
        job_executor_type=JobExecutorType.PROCESS if executor == "process" else JobExecutorType.THREAD,
        load_threshold=load_threshold,
        load_fnc=partial(job_count_load, max_jobs) if max_jobs else None,
        drain_timeout=drain_timeout,
        num_idle_processes=idle_processes if executor == "process" else 0,
        ws_url=url,
        api_key=api_key,
        api_secret=api_secret,
        port=http_port,
    )
    server.rtc_session(
        partial(run_job, settings),
        agent_name=agent_name,
        type=WorkerType.PUBLISHER if per == "publisher" else WorkerType.ROOM,
        on_request=accept,
        on_session_end=session_end,
    )
    server.on(
        "worker_registered",
        lambda worker_id, info: say(
            f"worker {worker_id} registered at {url}"
            + (f" for agent name {agent_name!r}" if agent_name else " (automatic dispatch)")
        ),
    )
    asyncio.run(serve(server, drain_timeout, say))


async def serve(server, drain_timeout: int, say) -> None:
    """Run until SIGTERM/SIGINT, then drain; a second signal stops the running jobs at once."""
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    running = asyncio.ensure_future(server.run())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        stopping.cancel()
        running.result()  # the framework's own error, if any
        raise MediaError("the worker stopped: it could not keep its connection to the LiveKit server")
    jobs = len(server.active_jobs)
    say(f"draining: no new jobs; {jobs} running job(s) may go on for up to {drain_timeout} s")
    drain = asyncio.ensure_future(server.drain(timeout=drain_timeout))
    forced = asyncio.ensure_future(force.wait())
    await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if not drain.done() or drain.exception() is not None:
        drain.cancel()
        if server.active_jobs:
            say(f"stopping {len(server.active_jobs)} running job(s); their outputs are closed")
    await asyncio.gather(drain, return_exceptions=True)
    await server.aclose()
    await asyncio.gather(running, return_exceptions=True)
    say("worker stopped")
