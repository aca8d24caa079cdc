"""Server-Sent Events: a session's new messages and state changes, live (SPEC §6.2).

`follow` is the one session stream, missing nothing; the console renders its updates as
HTML, and `live_stream` renders them for the API and the web widget, through a `View` that
says what a client may see: the API's whole messages (private ones to operators), the
widget's only public ones (SPEC §14)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
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
    delivery), a `session` change, an operator `typing` (`who`), the AI `replying` (a turn
    started or ended), or `idle` (nothing for KEEPALIVE_S)."""

    kind: str
    message: Message | None = None
    session: Session | None = None
    who: str = ""
    replying: bool = False


def resume_point(request: Request, default: int) -> int:
    """Where a stream starts: after Last-Event-ID (a reconnecting EventSource sends it), else
    `after_seq`, else `default`."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after_seq")
    try:
        return int(raw) if raw not in (None, "") else default
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
                if notice.get("private") and not private:
                    continue
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
            elif kind == "turn":
                # A turn's reply and its end both stop the typing.
                yield Update("replying", replying=bool(notice.get("typing")) and not notice.get("final"))
    finally:
        await notifier.unsubscribe(session_id, queue)


@dataclass(frozen=True)
class View:
    """What one kind of client sees: messages (None hides one), the session, typing."""

    include_private: bool
    message: Callable[[Message], dict[str, Any] | None]
    session: Callable[[Session], dict[str, Any]]
    typing: bool = False


API_VIEW = View(include_private=False, message=lambda m: m.model_dump(mode="json"), session=session_json)
PRIVATE_VIEW = View(include_private=True, message=lambda m: m.model_dump(mode="json"), session=session_json)


def live_stream(request: Request, session_id: str, after: int, view: View) -> Response:
    """The session's stream as `message` (id = seq), `session` and (if the view wants it)
    `typing` events."""
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    open_streams = metrics_of(request).sse_open

    async def stream() -> AsyncIterator[str]:
        typing = False
        try:
            open_streams.inc()
            yield "retry: 3000\n\n"
            async for update in follow(store, notifier, session_id, after, private=view.include_private):
                if update.kind == "message" and update.message is not None:
                    data = view.message(update.message)
                    if data is not None:
                        yield sse("message", data, str(update.message.seq))
                elif update.kind == "session" and update.session is not None:
                    yield sse("session", view.session(update.session))
                elif update.kind == "replying" and view.typing and update.replying != typing:
                    # Say each change once.
                    typing = update.replying
                    yield sse("typing", {"typing": typing})
                elif update.kind == "idle":
                    yield ": keepalive\n\n"
        finally:
            open_streams.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


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
