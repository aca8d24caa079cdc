"""Server-Sent Events: a session's new messages and state changes, live (SPEC §6.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent_core.models import Message, Session
from agent_core.store import AsyncStore, messages, sessions
from agent_core.store.tokens import TokenRecord
from gateway.api.common import load_session, session_json, store_of
from gateway.api.routing import Endpoint, Query
from gateway.auth import ANY, OPERATOR
from gateway.errors import Forbidden, Unprocessable
from gateway.http import query_bool
from gateway.metrics import metrics_of
from gateway.notifier import Notifier

KEEPALIVE_S = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass(frozen=True)
class Update:
    """One thing a session stream reports: a new `message`, an `updated` message (its
    delivery), a `session` change, an operator `typing` (`who`), or `idle` (nothing for
    KEEPALIVE_S)."""

    kind: str
    message: Message | None = None
    session: Session | None = None
    who: str = ""


def after_seq_of(request: Request, session: Session) -> int:
    """Where a stream starts: Last-Event-ID (a reconnect), `after_seq`, else the thread's end."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after_seq")
    try:
        return int(raw) if raw not in (None, "") else session.seq
    except ValueError:
        raise Unprocessable("after_seq: must be an integer (or send Last-Event-ID)") from None


async def follow(
    store: AsyncStore, notifier: Notifier, session_id: str, after: int, *, private: bool
) -> AsyncIterator[Update]:
    """A session's updates from `after` on, missing none: subscribed before the first read,
    and every message read from the store (a dropped notice is caught up by the next)."""
    queue = await notifier.subscribe(session_id)

    async def catch_up(last: int) -> tuple[list[Message], int]:
        current = await store.run(sessions.get(session_id))
        if current is None or current.seq <= last:
            return [], last
        items, _ = await store.run(
            messages.page(session_id, after_seq=last, limit=500, last_seq=current.seq, include_private=private)
        )
        return items, current.seq

    try:
        items, last = await catch_up(after)
        for m in items:
            yield Update("message", message=m)
        while True:
            try:
                notice = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield Update("idle")
                continue
            kind = notice.get("type")
            if kind == "message" and int(notice.get("seq", 0)) > last:
                items, last = await catch_up(last)
                for m in items:
                    yield Update("message", message=m)
            elif kind == "message_updated":
                msg = await store.run(messages.get(session_id, int(notice.get("seq", 0))))
                if msg is not None and (private or msg.public) and msg.seq <= last:
                    yield Update("updated", message=msg)
            elif kind == "session":
                current = await store.run(sessions.get(session_id))
                if current is not None:
                    yield Update("session", session=current)
            elif kind == "typing" and private:
                yield Update("typing", who=str(notice.get("who") or ""))
    finally:
        await notifier.unsubscribe(session_id, queue)


async def session_events(request: Request) -> Response:
    session = await load_session(request)
    token: TokenRecord = request.state.token
    private = bool(query_bool(request, "include_private"))
    if private and token.role not in OPERATOR:
        raise Forbidden("include_private: needs an operator or admin token")
    after = after_seq_of(request, session)
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    open_streams = metrics_of(request).sse_open

    async def stream() -> AsyncIterator[str]:
        try:
            open_streams.inc()
            yield "retry: 3000\n\n"
            async for update in follow(store, notifier, session.id, after, private=private):
                if update.kind == "message" and update.message is not None:
                    yield sse("message", update.message.model_dump(mode="json"), str(update.message.seq))
                elif update.kind == "session" and update.session is not None:
                    yield sse("session", session_json(update.session))
                elif update.kind == "idle":
                    yield ": keepalive\n\n"
        finally:
            open_streams.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


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
