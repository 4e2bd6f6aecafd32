"""The browser as a client: Debian's Chromium, driven by Playwright, runs LiveKit's JavaScript SDK
(``livekit-client`` from the npm registry, ``tests/browser``) against the dev server, with the SDK's
default options and no shim; and the dev server's own page for people.

Chromium is Debian's (``apt-get install chromium``), never a browser Playwright downloads. These tests
skip where it is absent, except under ``LKPLUG_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): there a
missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio
import soundfile
from aiohttp import web
from heard import dropouts, sounding_level, steady
from test_track_live import assert_bars, lkplug

from lkplug.outputs import bytes_written
from lkplug.testing import dominant_frequency, sine
from lkplug_livekit.devserver.page import CLIENT_JS, CLIENT_JS_VERSION
from lkplug_livekit.devserver.peers import HEIGHT, WIDTH, colour_bars
from lkplug_livekit.source import DEPARTURE_TIMEOUT

pytestmark = pytest.mark.live

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent / "browser"
SDK = HERE / "node_modules" / "livekit-client" / "dist" / "livekit-client.esm.mjs"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",  # grant the microphone and camera without asking
    "--use-fake-device-for-media-stream",  # Chromium's test devices: a beeping microphone, a camera
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SENT_PEAK_DB = -6.0  # the browser's tone and lkplug's tone: a sine with a -6 dBFS peak
SENT_RMS_DB = SENT_PEAK_DB - 3.01


def needs_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("LKPLUG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is absent (apt-get install chromium)")
        pytest.skip(f"Debian's Chromium ({CHROMIUM}) is absent: apt-get install chromium")
    if not SDK.exists():
        pytest.fail(f"{SDK} is absent: run `npm ci` in {HERE}")


@pytest.fixture(scope="session")
def capture_files(tmp_path_factory) -> list[str]:
    """Chromium's fake microphone and camera play these: a 440 Hz tone with a -6 dBFS peak (WAV) and
    the colour bars (Y4M, the raw format Chromium's fake camera reads)."""
    folder = tmp_path_factory.mktemp("capture")
    soundfile.write(folder / "tone.wav", sine(440, seconds=10, dbfs=SENT_PEAK_DB), 48000, subtype="PCM_16")
    with av.open(str(folder / "bars.y4m"), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=15)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        bars = colour_bars()[..., :3].copy()
        for index in range(15):
            frame = av.VideoFrame.from_ndarray(bars, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
    return [
        f"--use-file-for-fake-audio-capture={folder / 'tone.wav'}",
        f"--use-file-for-fake-video-capture={folder / 'bars.y4m'}",
    ]


@pytest_asyncio.fixture
async def browser(capture_files):
    needs_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + capture_files
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def site():
    """tests/browser on 127.0.0.1 (another origin than the dev server's, as an app's page would be)."""
    app = web.Application()
    app.router.add_static("/", HERE)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # the port the system gives, held from the start
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def sdk_page(browser, site):
    """A page with the npm copy of livekit-client loaded: ``join``, ``publishTone``, ``publishBars``,
    ``listen`` (tests/browser/sdk.html)."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{site}/sdk.html")
    await page.wait_for_function("window.ready === true", timeout=20_000)
    yield page
    await page.close()
    assert not errors, errors


async def join(page, server, identity: str = "browser", room: str = "test") -> dict:
    return await page.evaluate(
        "([url, token]) => join(url, token)", [server.url, server.token(identity, room)]
    )


def test_the_page_and_the_tests_use_the_same_livekit_client():
    """The page's CDN copy is the version the tests check (tests/browser/package.json)."""
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["livekit-client"]
    assert pinned == CLIENT_JS_VERSION
    assert f"livekit-client@{CLIENT_JS_VERSION}/" in CLIENT_JS


async def test_the_sdk_joins_with_its_default_options(livekit_server, livekit_join, sdk_page):
    """livekit-client tries /rtc/v1 first; the dev server's 404 (readable through CORS) sends it to /rtc."""
    bob = await livekit_join("bob")
    joined = await join(sdk_page, livekit_server)
    assert joined["state"] == "connected"
    assert joined["identity"] == "browser" and joined["sid"].startswith("PA_")
    others = await sdk_page.evaluate("[...room.remoteParticipants.keys()]")
    assert others == ["bob"]
    assert "browser" in {p.identity for p in bob.room.remote_participants.values()}


async def test_the_validate_request_gets_cors_headers(livekit_server, sdk_page, site):
    """What the SDK's fetch needs from another origin: the status readable (404 on /rtc/v1, 200 with a
    good token on /rtc), and a preflight answered for requests with an Authorization header."""
    http = livekit_server.url.replace("ws://", "http://")
    token = livekit_server.token("browser")
    answers = await sdk_page.evaluate(
        """async ([http, token]) => {
            const v1 = await fetch(`${http}/rtc/v1/validate?access_token=${token}`);
            const v0 = await fetch(`${http}/rtc/validate?access_token=${token}`);
            const bad = await fetch(`${http}/rtc/validate?access_token=nonsense`);
            const twirp = await fetch(`${http}/twirp/livekit.RoomService/RemoveParticipant`, {
                method: "POST",
                headers: {Authorization: "Bearer nonsense", "Content-Type": "application/json"},
                body: JSON.stringify({room: "test", identity: "nobody"})});
            return [v1.status, v0.status, bad.status, twirp.status];
        }""",
        [http, token],
    )
    assert answers == [404, 200, 401, 401]


async def test_the_browser_publishes_microphone_and_camera_that_lkplug_records(
    livekit_server, sdk_page, tmp_path, record_property
):
    await join(sdk_page, livekit_server)
    published = await sdk_page.evaluate("publishDevices()")
    assert sorted(source for source, _ in published) == ["camera", "microphone"]
    sound, picture = tmp_path / "browser.wav", tmp_path / "browser.mp4"
    recordings = await asyncio.gather(
        lkplug(
            livekit_server, "run", "--source", "track:browser/microphone", "--sink", f"wav:{sound}", "-t", "4"
        ),
        lkplug(
            livekit_server, "run", "--source", "track:browser/camera", "--sink", f"file:{picture}", "-t", "4"
        ),
    )
    for code, _, err in recordings:
        assert code == 0, err
    data, rate = soundfile.read(sound)
    heard = steady(data)
    assert dominant_frequency(heard, rate) == pytest.approx(440, abs=2)
    assert sounding_level(heard, rate) == pytest.approx(SENT_RMS_DB, abs=0.5)
    record_property("dropouts", dropouts(heard, rate, SENT_RMS_DB))
    with av.open(str(picture)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (WIDTH, HEIGHT)
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(pictures) >= 15
    assert_bars(pictures[-1])


def publish_tone(server, seconds: int) -> asyncio.Future:
    """lkplug publishing 660 Hz as participant 'lkplug', track 'lk', for ``seconds`` (a running task)."""
    args = ("--source", "tone:660", "--sink", "track:lk", "--identity", "lkplug", "-t", str(seconds))
    return asyncio.ensure_future(lkplug(server, "run", *args))


async def test_lkplugs_tone_is_heard_in_the_browser_at_the_level_sent(
    livekit_server, sdk_page, record_property
):
    await join(sdk_page, livekit_server)
    tone = publish_tone(livekit_server, seconds=10)
    heard = await sdk_page.evaluate("listen('lkplug', 4)")
    code, _, err = await tone
    assert code == 0, err
    rate, data = heard["rate"], steady(np.asarray(heard["samples"]))
    assert rate == 48000 and len(data) > rate
    assert dominant_frequency(data, rate) == pytest.approx(660, abs=2)
    assert sounding_level(data, rate) == pytest.approx(SENT_RMS_DB, abs=0.5)
    record_property("dropouts", dropouts(data, rate, SENT_RMS_DB))


async def test_the_page_joins_lists_tracks_and_meters_lkplugs_tone(livekit_server, browser, tmp_path):
    """``lkplug devserver``'s page at / (its livekit-client from npm in place of the CDN's copy)."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.route(CLIENT_JS, lambda route: route.fulfill(path=SDK, content_type="text/javascript"))
    token = livekit_server.token("visitor")
    await page.goto(f"http://127.0.0.1:{livekit_server.port}/#token={token}")
    assert await page.inner_text("#room-name") == "test"
    tone = publish_tone(livekit_server, seconds=12)
    try:
        await page.click("text=Join with microphone and camera")
        await page.wait_for_selector("text=connected to room test as visitor", timeout=20_000)
        # the visitor's own microphone and camera (Chromium's fake devices), then lkplug's tone
        await page.wait_for_selector('[data-participant="visitor"] [data-kind="video"] video', timeout=20_000)
        mine = '[data-participant="visitor"] [data-kind="audio"] meter'
        theirs = '[data-participant="lkplug"] [data-kind="audio"] meter'
        await page.wait_for_selector(theirs, timeout=30_000)
        assert await page.get_attribute(theirs, "value") is not None
        # the meter starts at silence (-60) and moves to the tone's level once it plays
        await page.wait_for_function(f"document.querySelector('{theirs}').value > -20", timeout=10_000)
        levels = []
        for _ in range(10):
            levels.append(
                (
                    float(await page.get_attribute(theirs, "data-dbfs")),
                    float(await page.get_attribute(mine, "data-dbfs")),
                )
            )
            await asyncio.sleep(0.1)
        shot = tmp_path / "page.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        participants = await page.eval_on_selector_all(
            "[data-participant]", "ds => ds.map(d => d.dataset.participant)"
        )
    finally:
        code, _, err = await tone
        await page.close()
    assert code == 0, err
    assert sorted(participants) == ["lkplug", "visitor"]
    assert max(theirs for theirs, _ in levels) == pytest.approx(SENT_RMS_DB, abs=1.0), levels
    # the visitor's microphone goes through the browser's voice processing (the page keeps the SDK's
    # defaults, right for a voice), which turns a steady tone down as noise: heard, not at its level
    assert max(mine for _, mine in levels) > -40, levels
    assert not errors, errors


@pytest.mark.parametrize("unpublish_first", [False, True], ids=["leave", "unpublish-then-leave"])
async def test_a_participant_who_leaves_ends_a_default_recording(
    livekit_server, sdk_page, tmp_path, record_property, unpublish_first
):
    """Leaving is the end of a recording without ``follow``: no wait for a return (that is for a
    connection that drops, which LiveKit's server keeps in the room meanwhile)."""
    await join(sdk_page, livekit_server)
    await sdk_page.evaluate(f"publishTone(440, {10 ** (SENT_PEAK_DB / 20)})")
    out = tmp_path / "browser.wav"
    recording = asyncio.ensure_future(
        lkplug(livekit_server, "run", "--source", "track:browser", "--sink", f"wav:{out}")
    )
    for _ in range(300):  # until 3 s of the tone are written (s16 mono)
        if bytes_written(out) > 3 * 48000 * 2 or recording.done():
            break
        await asyncio.sleep(0.1)
    if unpublish_first:
        await sdk_page.evaluate("unpublishAll()")
        await asyncio.sleep(1.0)
    left = time.monotonic()
    await sdk_page.evaluate("room.disconnect()")
    code, _, err = await asyncio.wait_for(recording, 60)
    ended = time.monotonic() - left
    record_property("ended_after_s", round(ended, 2))
    assert code == 0, err
    assert "browser left the room" in err
    # lkplug waits DEPARTURE_TIMEOUT (20 s) only for a participant who may come back
    assert ended < DEPARTURE_TIMEOUT / 2, ended
    data, rate = soundfile.read(out)
    assert len(data) > 2 * rate
    assert dominant_frequency(steady(data), rate) == pytest.approx(440, abs=2)
    # an audio-only publisher: its dropouts, beside those of the microphone-and-camera test
    record_property("dropouts", dropouts(steady(data)[: -rate // 2], rate, SENT_RMS_DB))


async def test_every_http_answer_carries_cors_headers(livekit_server):
    """No browser needed: aiohttp's own 404 and 405, a handler's answer and a preflight."""
    import aiohttp

    http = livekit_server.url.replace("ws://", "http://")
    origin = {"Origin": "http://127.0.0.1:1"}
    preflight = {
        **origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    seen = []
    async with aiohttp.ClientSession() as session:
        for method, path, headers in [
            ("GET", "/no/such/path", origin),
            ("DELETE", "/rtc/validate", origin),
            ("GET", "/rtc/validate", origin),
            ("OPTIONS", "/twirp/livekit.RoomService/RemoveParticipant", preflight),
        ]:
            async with session.request(method, http + path, headers=headers) as answer:
                allowed = answer.headers.get("Access-Control-Allow-Origin")
                seen.append((answer.status, allowed, answer.headers.get("Access-Control-Allow-Headers")))
    assert seen == [
        (404, origin["Origin"], None),
        (405, origin["Origin"], None),
        (401, origin["Origin"], None),
        (204, origin["Origin"], "authorization"),
    ]
