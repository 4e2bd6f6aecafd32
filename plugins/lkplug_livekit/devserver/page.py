"""The dev server's page for people, at ``/``: join a room with the microphone and camera, list the
participants and their tracks, play what is subscribed, a level meter per audio track (``page.html``).

The page imports ``livekit-client`` from a public CDN (no JavaScript of LiveKit's is copied into
lkplug); the browser tests serve the same version from the npm registry in its place
(``tests/browser/package.json`` pins it, and a test checks the two agree).
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

CLIENT_JS_VERSION = "2.23.0"
CLIENT_JS = f"https://cdn.jsdelivr.net/npm/livekit-client@{CLIENT_JS_VERSION}/dist/livekit-client.esm.mjs"


def page_html(client_js: str = CLIENT_JS) -> str:
    """The page's HTML, importing livekit-client (an ES module) from ``client_js``."""
    html = resources.files(__package__).joinpath("page.html").read_text()
    return html.replace('from "CLIENT_JS"', f"from {json.dumps(client_js)}")


def add_page(app: web.Application, client_js: str = CLIENT_JS) -> None:
    """Serve the page at ``/`` of ``app``. It holds no secret: the token comes in the URL's fragment
    (``/#token=...``, which the browser never sends) or is pasted into it."""
    html = page_html(client_js)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/", page)
