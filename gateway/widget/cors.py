"""CORS for the widget's public API: exactly the allowed origins, never `*`, no credentials.

A request's origin is checked against its agent's `allowed_origins` by the endpoint, which
marks it allowed (`allow`); the edge layer (gateway/edge.py) then adds the CORS headers to
whatever the response is, errors included, so the widget can read a 422 or a 429. Preflights carry no key or token,
so they are answered for origins some enabled widget allows; the request itself is then checked
against its own agent's list.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from agent_core.store import AsyncStore, widgets
from gateway.errors import error_response

PREFIX = "/widget/v1/"
ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "authorization, content-type, last-event-id"
MAX_AGE_S = "600"
_MARK = "widget_origin"


def allow(request: Request, origin: str) -> None:
    """The endpoint found `origin` allowed for this request: its response carries CORS headers."""
    request.scope.setdefault("state", {})[_MARK] = origin


def _origin(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return bytes(value).decode("latin-1")
    return None


def applies(scope: Scope) -> bool:
    """Whether this request is to the widget's API, whose responses carry CORS headers."""
    return bool(scope["path"].startswith(PREFIX))


def response_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The CORS headers of a widget API response: the origin only if the endpoint allowed it."""
    headers = [(b"vary", b"Origin")]
    origin = scope.get("state", {}).get(_MARK)
    if origin:
        headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        headers.append((b"access-control-expose-headers", b"Retry-After"))
    return headers


async def preflight(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer an OPTIONS preflight to the widget's API (it carries no key or token)."""
    origin = _origin(scope)
    store: AsyncStore = scope["app"].state.store
    if not origin or not await store.run(widgets.origin_allowed_anywhere(origin)):
        response = error_response(403, [f"Origin: '{origin or ''}' is not allowed by any widget"])
        response.headers["Vary"] = "Origin"
        await response(scope, receive, send)
        return
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": MAX_AGE_S,
        "Vary": "Origin",
    }
    await Response(status_code=204, headers=headers)(scope, receive, send)
