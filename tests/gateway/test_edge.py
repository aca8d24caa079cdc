"""The edge layer as ASGI sees it: request ids, the body limit framed by Content-Length or
counted while streaming, widget CORS headers only on the widget's API, every request timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.edge import Edge
from gateway.errors import PayloadTooLarge
from gateway.metrics import UNMATCHED, WebMetrics

LIMIT = 100


class _Route:
    path = "/things/{id}"


def _run(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on a fresh event loop in its own thread: other tests may leave one running in this one."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(make())).result()


def _scope(path: str = "/things/1", method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "method": method, "path": path, "headers": headers or [], "query_string": b""}


def _call(
    scope: dict[str, Any], chunks: list[bytes], app_received: list[bytes] | None = None
) -> tuple[list[dict[str, Any]], WebMetrics]:
    """Run one request through Edge around an app that reads the whole body and answers 200."""
    metrics = WebMetrics()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route
        while True:
            message = await receive()
            if app_received is not None:
                app_received.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    _run(lambda: Edge(app, metrics, max_bytes=LIMIT)(scope, receive, send))
    return sent, metrics


def _headers(sent: list[dict[str, Any]]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


def _count(metrics: WebMetrics, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "chatgw_http_request_duration_seconds_count", {"method": "POST", "route": route, "status": status}
    )
    return value or 0.0


def test_a_body_framed_by_content_length_reaches_the_app_whole() -> None:
    got: list[bytes] = []
    sent, metrics = _call(_scope(headers=[(b"content-length", b"100")]), [b"x" * 60, b"y" * 40], got)
    assert b"".join(got) == b"x" * 60 + b"y" * 40
    assert sent[0]["status"] == 200 and _count(metrics, "/things/{id}", "200") == 1


def test_a_declared_length_over_the_limit_is_413_before_the_app() -> None:
    got: list[bytes] = []
    sent, metrics = _call(_scope(headers=[(b"content-length", b"101")]), [b"x" * 101], got)
    assert got == []
    assert sent[0]["status"] == 413 and sent[1]["body"] == b'{"success":false,"errors":["body: larger than 100 bytes"]}'
    assert _count(metrics, UNMATCHED, "413") == 1


@pytest.mark.parametrize("headers", [[], [(b"content-length", b"ten")]], ids=["chunked", "unreadable-length"])
def test_a_body_without_a_usable_length_is_counted_while_it_streams(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(PayloadTooLarge, match="body: larger than 100 bytes"):
        _call(_scope(headers=headers), [b"x" * 60, b"y" * 41])
    got: list[bytes] = []
    sent, _ = _call(_scope(headers=headers), [b"x" * 60, b"y" * 40], got)
    assert sent[0]["status"] == 200 and b"".join(got) == b"x" * 60 + b"y" * 40


def test_the_request_id_is_echoed_or_made() -> None:
    sent, _ = _call(_scope(headers=[(b"x-request-id", b"abc")]), [b""])
    assert _headers(sent)[b"x-request-id"] == b"abc"
    sent, _ = _call(_scope(), [b""])
    made = _headers(sent)[b"x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0


def test_only_the_widget_api_gets_cors_headers() -> None:
    widget, _ = _call(_scope("/widget/v1/messages"), [b""])
    assert _headers(widget)[b"vary"] == b"Origin"
    other, _ = _call(_scope("/twilio/messages"), [b""])
    assert b"vary" not in _headers(other) and b"access-control-allow-origin" not in _headers(other)


def test_an_unhandled_error_is_timed_as_a_500() -> None:
    metrics = WebMetrics()

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = _Route
        raise RuntimeError("boom")

    async def nothing() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def drop(message: Any) -> None:
        pass

    with pytest.raises(RuntimeError):
        _run(lambda: Edge(broken, metrics, max_bytes=LIMIT)(_scope(), nothing, drop))
    assert _count(metrics, "/things/{id}", "500") == 1
