"""The widget's static file (`/widget.js`) and the demo page (`/widget/demo`) `make run` shows."""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from agent_core.store import agents
from gateway.api.common import store_of
from gateway.api.routing import Endpoint
from gateway.cli.demo import DEMO_AGENT_ID
from gateway.errors import NotFound

SCRIPT_PATH = "/widget.js"


@cache
def script() -> tuple[bytes, str]:
    body = (files("gateway.widget") / "static" / "widget.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def widget_js(request: Request) -> Response:
    body, etag = script()
    headers = {
        "Cache-Control": "public, max-age=300",
        "ETag": etag,
        # Loaded by other sites' pages: readable cross-origin even where they isolate themselves.
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


DEMO_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;padding:32px;max-width:760px;color:#1f2937;line-height:1.5}"
    "code{background:#f3f4f6;padding:2px 5px;border-radius:4px;word-break:break-all}"
    "h1{font-size:26px}"
)


def demo_html(public_key: str, script_url: str) -> str:
    key = html.escape(public_key)
    src = html.escape(SCRIPT_PATH)
    snippet = html.escape(f'<script src="{script_url}" data-key="{public_key}" async></script>')
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Demo Store — web chat demo</title>
<style>{DEMO_STYLE}</style>
</head>
<body>
<main>
<h1>Acme Demo Store</h1>
<p>This page is a stand-in for your website. The chat bubble in the corner is the gateway's web
widget talking to the demo agent: open it and ask about shipping or returns; ask for a person
and take over from the operator console or the API.</p>
<p>Put it on your own site with one tag (and add your site's origin to the agent's
<code>widget.allowed_origins</code>):</p>
<p><code>{snippet}</code></p>
</main>
<script src="{src}" data-key="{key}" async></script>
</body>
</html>
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(DEMO_STYLE.encode()).digest()).decode()
    # As strict as a careful host's: the widget needs no inline script, eval or inline style.
    return (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        f"style-src 'sha256-{digest}'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    )


async def demo(request: Request) -> Response:
    agent = await store_of(request).run(agents.get(DEMO_AGENT_ID))
    if agent is None or not agent.widget.enabled or not agent.widget.public_key:
        raise NotFound("the demo agent has no widget here (`chatgw up` seeds it)")
    url = str(request.base_url).rstrip("/") + SCRIPT_PATH
    return HTMLResponse(demo_html(agent.widget.public_key, url), headers={"Content-Security-Policy": _csp()})


ENDPOINTS = [
    Endpoint(
        "GET",
        SCRIPT_PATH,
        widget_js,
        "The web chat widget's script (embed it with data-key)",
        None,
        "widget",
        envelope=False,
        content_type="application/javascript",
        response={"type": "string"},
        errors=(),
    ),
    Endpoint(
        "GET",
        "/widget/demo",
        demo,
        "A demo page with the widget on the demo agent",
        None,
        "widget",
        envelope=False,
        content_type="text/html",
        response={"type": "string"},
        errors=(404,),
    ),
]
