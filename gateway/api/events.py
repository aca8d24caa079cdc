"""Server-Sent Events: a session's new messages and state changes, live (SPEC §6.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent_core.store import messages, sessions
from agent_core.store.tokens import TokenRecord
from gateway.api.common import load_session, session_json, store_of
from gateway.api.routing import Endpoint, Query
from gateway.auth import ANY, OPERATOR
from gateway.errors import Forbidden, Unprocessable
from gateway.http import query_bool
from gateway.metrics import metrics_of
from gateway.notifier import Notifier

KEEPALIVE_S = 15.0


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def session_events(request: Request) -> Response:
    session = await load_session(request)
    token: TokenRecord = request.state.token
    private = bool(query_bool(request, "include_private"))
    if private and token.role not in OPERATOR:
        raise Forbidden("include_private: needs an operator or admin token")
    raw_after = request.headers.get("last-event-id") or request.query_params.get("after_seq")
    try:
        after = int(raw_after) if raw_after not in (None, "") else session.seq
    except ValueError:
        raise Unprocessable("after_seq: must be an integer (or send Last-Event-ID)") from None
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    queue = await notifier.subscribe(session.id)
    open_streams = metrics_of(request).sse_open

    async def catch_up(last: int) -> tuple[list[str], int]:
        current = await store.run(sessions.get(session.id))
        if current is None or current.seq <= last:
            return [], last
        items, _ = await store.run(
            messages.page(session.id, after_seq=last, limit=500, last_seq=current.seq, include_private=private)
        )
        return [_sse("message", m.model_dump(mode="json"), str(m.seq)) for m in items], current.seq

    async def stream() -> AsyncIterator[str]:
        last = after
        try:
            open_streams.inc()
            yield "retry: 3000\n\n"
            chunks, last = await catch_up(last)
            for chunk in chunks:
                yield chunk
            while True:
                try:
                    notice = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                kind = notice.get("type")
                if kind == "message" and int(notice.get("seq", 0)) > last:
                    # Read from the store, not the notice: a dropped notice is caught up here too.
                    chunks, last = await catch_up(last)
                    for chunk in chunks:
                        yield chunk
                elif kind == "session":
                    current = await store.run(sessions.get(session.id))
                    if current is not None:
                        yield _sse("session", session_json(current))
        finally:
            open_streams.dec()
            await notifier.unsubscribe(session.id, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/chat/session/{session_id}/events",
        session_events,
        "Server-Sent Events: `message` (new thread entries, id = seq) and `session` (state changes)",
        ANY,
        "sessions",
        envelope=False,
        content_type="text/event-stream",
        response={"type": "string"},
        query=(
            Query(
                "after_seq",
                "Replay messages after this seq first (or send Last-Event-ID)",
                {"type": "integer", "minimum": 0},
            ),
            Query("include_private", "Whispers, context, tool calls, drafts (operator/admin)", {"type": "boolean"}),
        ),
    ),
]
