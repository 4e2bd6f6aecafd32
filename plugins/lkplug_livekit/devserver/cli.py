"""``lkplug devserver``: the local LiveKit-protocol server in the foreground."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

DEFAULT_KEY, DEFAULT_SECRET = "devkey", "secret" * 6


@click.command("devserver")
@click.option("--port", default=7880, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--api-key", default=DEFAULT_KEY, show_default=True)
@click.option("--api-secret", default=DEFAULT_SECRET, show_default=True)
@click.option(
    "--demo", is_flag=True, help="Add participant 'alice' publishing a 440 Hz tone and colour bars."
)
@click.option("--room", default="demo", show_default=True, help="The room of --demo's alice.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only the connection details, not joins and publishes."
)
def devserver_command(port, api_key, api_secret, demo, room, quiet):
    """A local LiveKit-protocol server for tests and demos, on 127.0.0.1 only.

    NOT a production SFU: one process, media decoded and re-encoded for every subscriber, no
    simulcast, no resume. Point lkplug at your own LiveKit server or LiveKit Cloud for real work.

    \b
    lkplug devserver --demo
    export LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secretsecret...
    lkplug run --room demo --source track:alice --proc gain:db=-6 --sink wav:alice.wav -t 5
    """
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING if quiet else logging.INFO)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("livekit").setLevel(logging.ERROR)  # the demo participant's SDK: routine chatter
    try:
        asyncio.run(_serve(port, api_key, api_secret, demo, room))
    except KeyboardInterrupt:
        pass


async def _serve(port, api_key, api_secret, demo, room) -> None:
    from .server import DevServer

    server = DevServer(port, api_key, api_secret)
    try:
        await server.start()
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"cannot start the dev server: {exc}") from None
    click.echo(
        f"lkplug devserver (for tests and demos, not production)\n"
        f"  LIVEKIT_URL={server.url}\n  LIVEKIT_API_KEY={api_key}\n  LIVEKIT_API_SECRET={api_secret}",
        err=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    alice = None
    if demo:
        from .peers import Peer

        alice = await Peer.join(server.url, server.token("alice", room))
        await alice.publish_sine(440)
        await alice.publish_bars()
        click.echo(f"  demo: alice publishes a 440 Hz tone and colour bars in room {room!r}")
    click.echo("ready", err=False)
    await stop.wait()
    if alice is not None:
        await alice.close()
    await server.stop()
