"""Server-Sent Events: a session's new messages and state changes, live (SPEC §6.2).

`live_stream` is the one stream; a `View` says what a client may see of it: the API's shows
whole messages (private ones to operators), the web widget's only public ones (SPEC §14)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent_core.models import Message, Session
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


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass(frozen=True)
class View:
    """What one kind of client sees: messages (None hides one), the session, typing."""

    include_private: bool
    message: Callable[[Message], dict[str, Any] | None]
    session: Callable[[Session], dict[str, Any]]
    typing: bool = False


API_VIEW = View(include_private=False, message=lambda m: m.model_dump(mode="json"), session=session_json)
PRIVATE_VIEW = View(include_private=True, message=lambda m: m.model_dump(mode="json"), session=session_json)


def resume_point(request: Request, default: int) -> int:
    """Where a stream starts: after Last-Event-ID (a reconnecting EventSource sends it), else
    `after_seq`, else `default`."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after_seq")
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        raise Unprocessable("after_seq: must be an integer (or send Last-Event-ID)") from None


def live_stream(request: Request, session_id: str, after: int, view: View) -> Response:
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    open_streams = metrics_of(request).sse_open

    async def catch_up(last: int) -> tuple[list[str], int]:
        current = await store.run(sessions.get(session_id))
        if current is None or current.seq <= last:
            return [], last
        items, _ = await store.run(
            messages.page(
                session_id, after_seq=last, limit=500, last_seq=current.seq, include_private=view.include_private
            )
        )
        out = []
        for m in items:
            data = view.message(m)
            if data is not None:
                out.append(sse("message", data, str(m.seq)))
        return out, current.seq

    async def stream() -> AsyncIterator[str]:
        last = after
        typing = False
        queue = await notifier.subscribe(session_id)
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
                    if notice.get("private") and not view.include_private:
                        continue
                    # Read from the store, not the notice: a dropped notice is caught up here too.
                    chunks, last = await catch_up(last)
                    for chunk in chunks:
                        yield chunk
                elif kind == "session":
                    current = await store.run(sessions.get(session_id))
                    if current is not None:
                        yield sse("session", view.session(current))
                elif kind == "turn" and view.typing:
                    # A turn's reply and its end both stop the typing; say each change once.
                    now_typing = bool(notice.get("typing")) and not notice.get("final")
                    if now_typing != typing:
                        typing = now_typing
                        yield sse("typing", {"typing": typing})
        finally:
            open_streams.dec()
            await notifier.unsubscribe(session_id, queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def session_events(request: Request) -> Response:
    session = await load_session(request)
    token: TokenRecord = request.state.token
    private = bool(query_bool(request, "include_private"))
    if private and token.role not in OPERATOR:
        raise Forbidden("include_private: needs an operator or admin token")
    after = resume_point(request, session.seq)
    return live_stream(request, session.id, after, PRIVATE_VIEW if private else API_VIEW)


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
