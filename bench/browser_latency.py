"""The round trip browser -> relay -> browser (issue 18): Chromium (livekit-client from npm, as
tests/test_browser.py uses it) publishes a click every 3 s as ``alice``; two relays republish her at the
same time, the bare SDK's (``sdk_peer.py relay``: AudioStream -> AudioSource.capture_frame) and lkplug's
(``track:alice`` -> ``gain:db=-6`` -> ``track:processed``); the same page subscribes to both and times
each click's return on the AudioContext clock that timed it out (an AudioWorklet notes the first
sample of each click). Running the relays together puts the machine's load of the moment on both; the
figure is lkplug's round trip minus the bare SDK's, click by click, median over every click and run.

    python bench/browser_latency.py --runs 5 --seconds 15

Needs Debian's Chromium (/usr/bin/chromium) and ``npm ci`` in tests/browser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys

from aiohttp import web
from live_latency import HERE, cli, env_for, median_ms, summary_ms
from playwright.async_api import async_playwright

from lkplug_livekit.devserver.process import DevServerProcess, free_port

SITE = HERE.parent / "tests" / "browser"
ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
PEAK = 0.5  # the clicks' peak (full scale 1); lkplug's relay returns them 6 dB down
THRESHOLD = 0.05  # an onset: the first sample above this
EVERY = 3.0  # seconds between clicks: on a loaded machine a round trip reached 1.7 s


async def one_run(page, server, run: int, seconds: float, sink: str) -> dict[str, dict[int, float]]:
    """Both relays at once; per relay, each click's round trip (s) by click index."""
    bare_id = f"bare-relay-{run}"
    sdk = [sys.executable, str(HERE / "sdk_peer.py"), "relay", server.url]
    sdk += [server.token(bare_id), "alice", str(seconds + 40)]
    lkplug = cli("run", "--identity", "lkplug", "--source", "track:alice", "--proc", "gain:db=-6")
    lkplug += ["--sink", sink]
    processes = [subprocess.Popen(command, env=env_for(server)) for command in (sdk, lkplug)]
    try:
        heard = await page.evaluate(
            "([ids, s, t]) => timeClicks(ids, s, t)", [[bare_id, "lkplug"], seconds, THRESHOLD]
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.get_running_loop().run_in_executor(None, process.wait)
    await asyncio.sleep(1.0)  # the relays have left before the next run
    return {name: dict(heard[identity]) for name, identity in (("bare", bare_id), ("lkplug", "lkplug"))}


async def main(runs: int, seconds: float, queue_ms: int | None) -> None:
    sink = "track:processed" + ("" if queue_ms is None else f",queue_ms={queue_ms}")
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
            await page.evaluate(f"publishClicks({int(runs * (seconds + 45) + 60)}, {PEAK}, {EVERY})")
            bare, ours, differences = [], [], []
            for run in range(runs):
                heard = await one_run(page, server, run, seconds, sink)
                both = sorted(set(heard["bare"]) & set(heard["lkplug"]))
                bare += heard["bare"].values()
                ours += heard["lkplug"].values()
                added = [heard["lkplug"][i] - heard["bare"][i] for i in both]
                differences += added
                print(
                    f"  run {run + 1}: round trip via the bare SDK {summary_ms(heard['bare'].values())}, "
                    f"via lkplug {summary_ms(heard['lkplug'].values())}, lkplug - bare per click "
                    f"{summary_ms(added)}   load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            print(f"browser -> bare SDK relay -> browser   {median_ms(bare)}")
            print(f"browser -> lkplug gain -> browser      {median_ms(ours)}")
            print(f"  lkplug adds over the bare SDK        {median_ms(differences)} (per click, same click)")
            gap = statistics.median(ours) - statistics.median(bare)
            print(f"  difference of the two medians        {gap * 1000:7.1f} ms")
            await browser.close()
    finally:
        await server.stop()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--queue-ms",
        type=int,
        help="lkplug's capture queue (default: the track sink's, 0 beside a live source)",
    )
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.seconds, options.queue_ms))
