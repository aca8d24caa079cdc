"""The console's live streams (Server-Sent Events): one console-wide stream for the sessions
page (rows and stat cards, rendered from the same partials as the page) and a session page's
stream (thread entries and the session panel). A reconnect sends Last-Event-ID and misses
nothing: the session stream replays the thread after that seq, the list stream re-sends its
first page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agent_core.models import Role
from agent_core.store import sessions
from gateway.api.events import KEEPALIVE_S, SSE_HEADERS, follow, resume_point, sse
from gateway.console import auth, views
from gateway.console.pages import (
    agent_map,
    listed,
    outbox_entries,
    panel_for,
    rows_for,
    session_filter,
    signed_in,
    store_of,
)
from gateway.console.render import render
from gateway.errors import NotFound
from gateway.metrics import metrics_of
from gateway.notifier import Notifier

# Notices arriving this close together are answered with one read and one render.
COALESCE_S = 0.1
COALESCE_MAX = 200
# A stream re-checks its login before sending when this long has passed since the last check,
# so a logout or a revoked token (TOKEN_CACHE_S) ends it about as soon as it ends a page.
RECHECK_S = 1.0
ROW_NOTICES = frozenset({"message", "session", "message_updated"})


def _row_event(row: dict[str, Any]) -> str:
    return sse(
        "row",
        {
            "id": row["id"],
            "html": render("_session_row.html", row=row),
            "help": row["help_requested"],
            "activity": row["activity_ms"],
        },
    )


async def list_events(request: Request) -> Response:
    await signed_in(request)
    flt, view = session_filter(request)
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    queue = await notifier.subscribe("*")
    # EventSource resends Last-Event-ID itself; a page that had to open a new stream says `since`.
    reconnect = bool(request.headers.get("last-event-id") or request.query_params.get("since"))
    open_streams = metrics_of(request).sse_open

    async def next_batch() -> set[str] | None:
        """Session ids named by the next notices (None after KEEPALIVE_S of quiet)."""
        try:
            first = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
        except TimeoutError:
            return None
        batch = [first]
        deadline = time.monotonic() + COALESCE_S
        while len(batch) < COALESCE_MAX and (left := deadline - time.monotonic()) > 0:
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=left))
            except TimeoutError:
                break
        return {n["session_id"] for n in batch if n.get("type") in ROW_NOTICES and n.get("session_id")}

    async def stats_event(n: int) -> str:
        stats = await store.run(sessions.stats(flt.agent_id))
        return sse("stats", {"html": render("_stats.html", stats=stats), "help": stats["help_requested"]}, str(n))

    async def stream() -> AsyncIterator[str]:
        n = 1
        checked_at = time.monotonic()
        agents_by_id = await agent_map(store)
        try:
            open_streams.inc()
            yield "retry: 2000\n\n"
            yield await stats_event(n)
            if reconnect:
                found, _ = await listed(store, flt, view, None)
                rows = await rows_for(store, found, agents_by_id)
                yield sse("reset", {"html": "".join(render("_session_row.html", row=r) for r in rows)})
            while True:
                sids = await next_batch()
                if sids is None or time.monotonic() - checked_at > RECHECK_S:
                    if await auth.current(request) is None:
                        yield sse("expired", {"error": "console: signed out (or the session expired)"})
                        return
                    checked_at = time.monotonic()
                if sids is None:
                    yield ": keepalive\n\n"
                    continue
                if not sids:
                    continue
                found = await store.run(sessions.get_many(sids))
                if any(s.agent_id not in agents_by_id for s in found):
                    agents_by_id = await agent_map(store)
                shown = [s for s in found if flt.matches(s)]
                for row in await rows_for(store, shown, agents_by_id):
                    yield _row_event(row)
                for s in found:
                    if not flt.matches(s):
                        yield sse("remove", {"id": s.id})
                n += 1
                yield await stats_event(n)
        finally:
            open_streams.dec()
            await notifier.unsubscribe("*", queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def outbox_events(request: Request) -> Response:
    """The dev outbox page's stream: the whole list (newest first) when it opens and whenever
    something is added, so a reconnect misses nothing."""
    await signed_in(request)
    store = store_of(request)
    notifier: Notifier = request.app.state.notifier
    queue = await notifier.subscribe("*")
    open_streams = metrics_of(request).sse_open

    async def list_event() -> str:
        return sse("list", {"html": render("_outbox_entries.html", entries=await outbox_entries(store))})

    async def stream() -> AsyncIterator[str]:
        checked_at = time.monotonic()
        try:
            open_streams.inc()
            yield "retry: 2000\n\n"
            yield await list_event()
            while True:
                try:
                    notice = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    notice = None
                if notice is None or time.monotonic() - checked_at > RECHECK_S:
                    if await auth.current(request) is None:
                        yield sse("expired", {"error": "console: signed out (or the session expired)"})
                        return
                    checked_at = time.monotonic()
                if notice is None:
                    yield ": keepalive\n\n"
                elif notice.get("type") == "dev_outbox":
                    yield await list_event()
        finally:
            open_streams.dec()
            await notifier.unsubscribe("*", queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def session_events(request: Request) -> Response:
    operator = await signed_in(request)
    store = store_of(request)
    sid = request.path_params["session_id"]
    session = await store.run(sessions.get(sid))
    if session is None:
        raise NotFound(f"session_id: no session with id '{sid}'")
    after = resume_point(request, session.seq)
    notifier: Notifier = request.app.state.notifier
    open_streams = metrics_of(request).sse_open

    async def panel_event() -> str | None:
        current = await store.run(sessions.get(sid))
        if current is None:
            return None
        panel = await panel_for(store, current, operator)
        return sse(
            "panel",
            {
                "html": render("_session_panel.html", panel=panel),
                "actions": render("_composer_actions.html", panel=panel),
                "status": panel["status"],
            },
        )

    async def stream() -> AsyncIterator[str]:
        checked_at = time.monotonic()
        try:
            open_streams.inc()
            # The starting seq as the stream's last event id: a reconnect resumes from here
            # even if nothing was sent before the connection dropped.
            yield f"retry: 2000\nid: {after}\n\n"
            async for update in follow(store, notifier, sid, after, private=True):
                if update.kind == "idle" or time.monotonic() - checked_at > RECHECK_S:
                    if await auth.current(request) is None:
                        yield sse("expired", {"error": "console: signed out (or the session expired)"})
                        return
                    checked_at = time.monotonic()
                msg = update.message
                if update.kind in ("message", "updated") and msg is not None:
                    data = {"id": msg.id, "seq": msg.seq, "html": render("_message.html", m=views.message_view(msg))}
                    yield sse("message", data, str(msg.seq) if update.kind == "message" else None)
                    if update.kind == "message" and msg.role in (Role.system, Role.customer, Role.agent):
                        # Commands, hand-backs and answers change what the panel offers.
                        event = await panel_event()
                        if event:
                            yield event
                elif update.kind == "session":
                    event = await panel_event()
                    if event:
                        yield event
                elif update.kind == "typing" and update.who != operator.name:
                    yield sse("typing", {"who": update.who})
                elif update.kind == "idle":
                    yield ": keepalive\n\n"
        finally:
            open_streams.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
