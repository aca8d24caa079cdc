"""The operator console (SPEC §10): server-rendered pages at /console, our own static files,
live updates over Server-Sent Events. `routes()` is what gateway.app mounts."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from gateway.console import live, pages
from gateway.console.render import STATIC_DIR

UPLOAD_PATH = "/console/knowledge/documents"
# Asset URLs carry a content hash (?v=…), so a browser may keep them for a long time.
STATIC_CACHE = "public, max-age=86400"


class CachedStatic(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_cache(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start" and message.get("status") in (200, 304):
                message.setdefault("headers", []).extend(
                    [(b"cache-control", STATIC_CACHE.encode()), (b"x-content-type-options", b"nosniff")]
                )
            await send(message)

        await super().__call__(scope, receive, with_cache)  # type: ignore[arg-type]


def routes() -> list[BaseRoute]:
    return [
        Route("/console", pages.sessions_page, methods=["GET"]),
        Route("/console/login", pages.login_page, methods=["GET"]),
        Route("/console/login", pages.login_submit, methods=["POST"]),
        Route("/console/logout", pages.logout, methods=["POST"]),
        Route("/console/events", live.list_events, methods=["GET"]),
        Route("/console/outbox/events", live.outbox_events, methods=["GET"]),
        Route("/console/sessions/{session_id}", pages.session_page, methods=["GET"]),
        Route("/console/sessions/{session_id}/events", live.session_events, methods=["GET"]),
        Route("/console/sessions/{session_id}/command", pages.command, methods=["POST"]),
        Route("/console/sessions/{session_id}/call", pages.place_call, methods=["POST"]),
        Route("/console/sessions/{session_id}/template", pages.template, methods=["POST"]),
        Route("/console/sessions/{session_id}/typing", pages.typing, methods=["POST"]),
        Route("/console/knowledge", pages.knowledge_page, methods=["GET"]),
        Route(UPLOAD_PATH, pages.upload_document, methods=["POST"]),
        Route("/console/knowledge/documents/{document_id}", pages.document_status, methods=["GET"]),
        Route("/console/knowledge/documents/{document_id}/archive", pages.archive_document, methods=["POST"]),
        Route("/console/outbox", pages.outbox_page, methods=["GET"]),
        Mount("/console/static", app=CachedStatic(directory=STATIC_DIR), name="console-static"),
    ]
