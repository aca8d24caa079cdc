"""`create_app(settings)`: routes, middleware, exception handlers; a lifespan opens clients."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent_core.llm import AsyncLLMProvider
from agent_core.settings import Settings
from agent_core.store import AsyncStore
from agent_core.store.connection import async_client
from agent_core.store.multiplex import MultiplexedRedis
from gateway import console
from gateway.api import agents as agents_api
from gateway.api import calls as calls_api
from gateway.api import chat as chat_api
from gateway.api import customers as customers_api
from gateway.api import events as events_api
from gateway.api import health as health_api
from gateway.api import knowledge as knowledge_api
from gateway.api.routing import Endpoint, build_routes, openapi
from gateway.auth import TokenCache
from gateway.edge import Edge
from gateway.errors import EXCEPTION_HANDLERS, error_response
from gateway.metrics import WebMetrics
from gateway.notifier import Notifier
from gateway.webhooks import twilio as twilio_webhooks
from gateway.webhooks import voice as voice_webhooks
from gateway.widget import ENDPOINTS as WIDGET_ENDPOINTS
from gateway.widget import api as widget_api
from workers.rqwire import RQJobFormat

VERSION = "0.1.0"
GC_YOUNG = 20_000
log = structlog.get_logger("gateway")


def endpoints() -> list[Endpoint]:
    # The router tries routes in order: the webhooks and the inbound call, the hot paths, first.
    return [
        *twilio_webhooks.ENDPOINTS,
        *voice_webhooks.ENDPOINTS,
        *chat_api.ENDPOINTS,
        *calls_api.ENDPOINTS,
        *events_api.ENDPOINTS,
        *agents_api.ENDPOINTS,
        *customers_api.ENDPOINTS,
        *knowledge_api.ENDPOINTS,
        *WIDGET_ENDPOINTS,
        *health_api.ENDPOINTS,
    ]


def create_app(settings: Settings, redis_url: str, voice_llm: AsyncLLMProvider | None = None) -> Starlette:
    """`voice_llm` replaces the voice agent's model (benchmarks)."""
    eps = endpoints()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = async_client(redis_url)
        fast = MultiplexedRedis(redis_url) if redis_url.startswith(("redis://", "rediss://")) else None
        app.state.redis = client
        app.state.store = AsyncStore(client, fast, RQJobFormat())
        app.state.tokens = TokenCache(app.state.store, settings.app.token_cache_s)
        app.state.notifier = Notifier(client)
        app.state.voice = voice_webhooks.runtime(settings, app.state.store, voice_llm)
        app.state.started_at = time.time()
        twilio = settings.twilio
        if twilio.configured:
            assert twilio.auth_token is not None
            app.state.twilio_auth_token = twilio.auth_token.get_secret_value()
        else:
            app.state.twilio_auth_token = await twilio_webhooks.dev_auth_token(app.state.store)
        if not twilio.validate_signatures:
            log.warning(
                "TWILIO_VALIDATE_SIGNATURES=false: Twilio webhooks are NOT verified; never do this in production"
            )
        await app.state.notifier.start()
        # Start-up leaves ~100k long-lived objects; a full collection walking them stalls the
        # event loop for tens of ms. Frozen objects are never scanned again.
        gc.collect()
        gc.freeze()
        # A request allocates a few hundred containers, nearly all freed by reference counting;
        # at the default 700 the young generation was collected every few requests (≈ 7 µs of
        # a webhook's CPU). Cyclic garbage waits a little longer: ≤ GC_YOUNG objects.
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        log.info("gateway ready", llm=settings.llm.provider, public_base_url=settings.app.public_base_url)
        try:
            yield
        finally:
            await app.state.notifier.stop()
            await app.state.voice.close()
            if fast is not None:
                await fast.close()
            await client.aclose()

    spec_cache: dict[str, Any] = {}

    async def openapi_json(request: Request) -> Response:
        if "doc" not in spec_cache:
            spec_cache["doc"] = openapi(
                eps, title="Chat Agent Gateway", version=VERSION, server=settings.app.public_base_url
            )
        return JSONResponse(spec_cache["doc"])

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, [f"not found: {request.method} {request.url.path}"])

    routes = [
        *build_routes(eps),
        *voice_webhooks.WEBSOCKETS,
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *console.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={**EXCEPTION_HANDLERS, 404: not_found},  # type: ignore[dict-item]
    )
    app.state.settings = settings
    app.state.endpoints = eps
    app.state.metrics = WebMetrics()
    # Inside Starlette's ServerErrorMiddleware, so an unhandled error is timed as a 500 too.
    app.add_middleware(
        Edge,
        metrics=app.state.metrics,
        max_bytes=settings.app.max_body_bytes,
        overrides={
            **{
                path: max(settings.app.max_body_bytes, knowledge_api.MAX_REQUEST_BYTES)
                for path in (knowledge_api.UPLOAD_PATH, console.UPLOAD_PATH)
            },
            widget_api.MESSAGES_PATH: min(settings.app.max_body_bytes, widget_api.MAX_REQUEST_BYTES),
        },
    )
    return app
