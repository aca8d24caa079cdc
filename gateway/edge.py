"""The one pure-ASGI layer in front of the router: request id and log context, the HTTP
metrics, the body limit and the widget's CORS headers.

They were four middlewares, each wrapping `send` (and one `receive`) again, so every
response went through four closures and every request through four coroutines; one layer
reads the headers once and wraps `send` once (issue 13: the webhook's ingest cost).
"""

from __future__ import annotations

import os
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge, error_response
from gateway.metrics import WebMetrics, route_of
from gateway.widget import cors

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_MAX = 100


def new_request_id() -> str:
    """32 random hex digits (what `uuid4().hex` gave, without building a UUID object)."""
    return os.urandom(16).hex()


class Edge:
    """Every HTTP request: its id (X-Request-ID, or a new one) bound into the log context and
    echoed in the response; 413 for a body over MAX_BODY_BYTES (or a path's own limit, e.g.
    document uploads), by Content-Length or while streaming; CORS headers and preflights for
    the widget's API; and the request timed to the end of its response body, labelled with
    the route template the router matched (a 413 refused here is `unmatched`)."""

    def __init__(
        self, app: ASGIApp, metrics: WebMetrics, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.default = max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = ""
        lengths: list[bytes] = []
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                rid = value.decode("latin-1")[:REQUEST_ID_MAX]
            elif name == b"content-length":
                lengths.append(value)
        rid = rid or new_request_id()
        # Each request runs in its own task, started with a copy of the server's context, so
        # nothing bound by an earlier request is there to clear.
        structlog.contextvars.bind_contextvars(request_id=rid)
        rid_header = (REQUEST_ID_HEADER, rid.encode("latin-1"))
        widget = cors.applies(scope)
        # An exception no handler turned into a response becomes a 500 outside this layer.
        status = 500

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                if widget:
                    headers.extend(cors.response_headers(scope))
                headers.append(rid_header)
            await send(message)

        try:
            if widget and scope["method"] == "OPTIONS":
                await cors.preflight(scope, receive, send_edge)
            else:
                await self._limited(scope, receive, send_edge, lengths)
        finally:
            self.metrics.request(scope["method"], route_of(scope), status, time.perf_counter() - started)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, lengths: list[bytes]) -> None:
        limit = self.overrides.get(scope["path"], self.default) if scope["method"] == "POST" else self.default
        declared: list[int] = []
        for value in lengths:
            try:
                declared.append(int(value))
            except ValueError:
                pass
        if any(length > limit for length in declared):
            await error_response(413, [f"body: larger than {limit} bytes"])(scope, receive, send)
            return
        if declared and len(declared) == len(lengths):
            # The HTTP parser frames the body by its Content-Length: no more than that arrives.
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"body: larger than {limit} bytes")
            return message

        await self.app(scope, limited, send)
