"""The relay latency lkplug adds with a browser publishing: Chromium (livekit-client from npm, as
tests/test_browser.py uses it) publishes a click a second as ``alice``; a bare-SDK listener hears her
straight from the dev server and through a relay that republishes her: the bare SDK's
(``sdk_peer.py relay``) and lkplug's (``track:alice`` → ``gain:db=-6`` → ``track:processed``), in the
same run. Prints each relay's extra delay over the direct path and their difference.

    python bench/browser_latency.py --runs 3 --seconds 12

Needs Debian's Chromium (/usr/bin/chromium) and ``npm ci`` in tests/browser.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from aiohttp import web
from live_latency import HERE, cli, median_ms, relay_delay
from playwright.async_api import async_playwright

from lkplug_livekit.devserver.peers import Peer
from lkplug_livekit.devserver.process import DevServerProcess, free_port

SITE = HERE.parent / "tests" / "browser"
ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def main(runs: int, seconds: float) -> None:
    app = web.Application()
    app.router.add_static("/", SITE)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = await DevServerProcess().start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/sdk.html")
            await page.wait_for_function("window.ready === true")
            await page.evaluate("([u, t]) => join(u, t)", [server.url, server.token("alice")])
            await page.evaluate(f"publishClicks({int(runs * (seconds + 25) + 60)}, 0.5)")
            bob = await Peer.join(server.url, server.token("bob"))
            bare, ours = [], []
            for run in range(runs):
                sdk = [sys.executable, str(HERE / "sdk_peer.py"), "relay", server.url]
                sdk += [server.token(f"bare-relay-{run}"), "alice", str(seconds + 20)]
                lkplug = cli("run", "--identity", "lkplug", "--source", "track:alice", "--proc", "gain:db=-6")
                lkplug += ["--sink", "track:processed"]
                bare += await relay_delay(server, bob, sdk, f"bare-relay-{run}", seconds)
                ours += await relay_delay(server, bob, lkplug, "lkplug", seconds)
                print(f"run {run + 1}: bare SDK {median_ms(bare)}, lkplug {median_ms(ours)}", flush=True)
            print(f"relay through the bare SDK, extra   {median_ms(bare)}  ({len(bare)} clicks)")
            print(f"relay through lkplug, extra         {median_ms(ours)}  ({len(ours)} clicks)")
            added = statistics.median(ours) - statistics.median(bare)
            print(f"  lkplug adds over the bare SDK     {added * 1000:7.1f} ms (gain -6 dB)")
            await bob.close()
            await browser.close()
    finally:
        await server.stop()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.seconds))
