"""``lkplug devserver``: the local LiveKit-protocol server in the foreground."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal

import click

from lkplug.children import end_with_parent

DEFAULT_KEY = "devkey"
# set by DevServerProcess: the pid of the lkplug process that started this server (it ends with it)
PARENT_ENV = "LKPLUG_DEVSERVER_PARENT"


@click.command("devserver")
@click.option("--port", default=7880, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--api-key", default=DEFAULT_KEY, show_default=True)
@click.option(
    "--api-secret-file",
    type=click.File("r"),
    help="Read the API secret from this file (else env LIVEKIT_API_SECRET, else one is made up and "
    "printed). Never on the command line: every local user can read that.",
)
@click.option(
    "--api-secret",
    hidden=True,
    expose_value=False,
    callback=lambda ctx, param, value: _refuse_argv_secret() if value is not None else None,
)
@click.option(
    "--demo", is_flag=True, help="Add participant 'alice' publishing a 440 Hz tone and colour bars."
)
@click.option("--room", default="demo", show_default=True, help="The room of --demo's alice.")
@click.option(
    "--departure-timeout",
    type=click.FloatRange(0, 3600),
    default=20.0,
    show_default=True,
    help="Seconds a participant whose signalling dropped is kept to resume its session.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only the connection details, not joins and publishes."
)
def devserver_command(port, api_key, api_secret_file, demo, room, departure_timeout, quiet):
    """A local LiveKit-protocol server for tests and demos, on 127.0.0.1 only.

    NOT a production SFU: one process, published media forwarded as it is (never decoded), no
    simulcast, no congestion control. Point lkplug at your own LiveKit server or LiveKit Cloud for real work.

    \b
    lkplug devserver --demo
    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=(printed)
    lkplug run --room demo --source track:alice --proc gain:db=-6 --sink wav:alice.wav -t 5
    """
    _end_with_parent()
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING if quiet else logging.INFO)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("livekit").setLevel(logging.ERROR)  # the demo participant's SDK: routine chatter
    made_up = False
    if api_secret_file is not None:
        api_secret = api_secret_file.read().strip()
        if not api_secret:
            raise click.UsageError(f"{api_secret_file.name} holds no secret")
    elif os.environ.get("LIVEKIT_API_SECRET"):
        api_secret = os.environ["LIVEKIT_API_SECRET"]
    else:
        api_secret, made_up = secrets.token_urlsafe(24), True
    try:
        asyncio.run(_serve(port, api_key, api_secret, made_up, demo, room, departure_timeout))
    except KeyboardInterrupt:
        pass


def _refuse_argv_secret() -> None:
    raise click.UsageError(
        "--api-secret is not taken: a command line is readable by every local user (ps). "
        "Set LIVEKIT_API_SECRET or give --api-secret-file PATH"
    )


def _end_with_parent() -> None:
    """Started by lkplug (``PARENT_ENV``): end when it ends, however it ends (even SIGKILL). Linux
    sends SIGTERM when the parent dies (PR_SET_PDEATHSIG); elsewhere a watcher polls."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    end_with_parent(signal.SIGTERM)
    if os.getppid() != int(parent):  # the parent died before the line above
        raise SystemExit(1)


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.environ.get(PARENT_ENV)
    while parent and not stop.is_set():
        if os.getppid() != int(parent):
            stop.set()
        await asyncio.sleep(1.0)


async def _serve(port, api_key, api_secret, made_up, demo, room, departure_timeout) -> None:
    from .server import DevServer

    server = DevServer(port, api_key, api_secret, departure_timeout)
    try:
        await server.start()
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"cannot start the dev server: {exc}") from None
    # the secret is printed only when it was made up here (the caller knows its own)
    secret = api_secret if made_up else "(the one given)"
    click.echo(
        f"lkplug devserver (for tests and demos, not production)\n"
        f"  LIVEKIT_URL={server.url}\n  LIVEKIT_API_KEY={api_key}\n  LIVEKIT_API_SECRET={secret}"
    )
    # what was made at start-up (modules, the app) lives as long as the server: out of the collector's
    # way, so that a full collection walks only what came since. Before, each took 21-48 ms (once per
    # 10 s run of two recorders, measured), and the event loop forwarded nothing meanwhile
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(stop))
    try:
        if demo:
            server.add_demo(room, "alice")
            click.echo(f"  demo: alice publishes a 440 Hz tone and colour bars in room {room!r}")
        # the page for people (page.py); the token rides in the fragment, which browsers never send
        page_token = server.token("me", room)
        click.echo(
            f"  page: http://127.0.0.1:{server.port}/#token={page_token}  (joins room {room!r} as 'me')"
        )
        click.echo("ready")
        await stop.wait()
    finally:
        watcher.cancel()
        await server.stop()
