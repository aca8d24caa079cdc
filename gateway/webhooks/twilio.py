"""Twilio messaging webhooks (SPEC §7): verify, parse, persist + enqueue, acknowledge.

The inbound webhook never calls the LLM or Twilio's REST API: one Lua round trip stores
the message (deduplicated by MessageSid and I-Twilio-Idempotency-Token) and queues the
turn, then empty TwiML goes back. An unknown number gets 200 too (a 5xx would make
Twilio retry forever); it is logged and counted.

Both messaging webhooks are plain ASGI apps (`SignedWebhook`): they read the body from
`receive`, the two headers they need from the scope, and send the constant TwiML
themselves, without Starlette's `Request`, `Response` and per-route exception layer — a
fifth of what a webhook cost the web process (issue 13, item 3; docs/decisions.md). Errors
are raised as `ApiError`s, which the application's exception middleware turns into the
usual envelope, as for every other endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from agent_core import delivery, inbound
from agent_core.store import AsyncStore, health
from channels.twilio import (
    CONTENT_TYPE,
    EMPTY_RESPONSE,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    InvalidTwilioRequest,
    parse_form,
    parse_inbound,
    parse_status,
    verify,
    webhook_url,
)
from gateway.api.routing import Endpoint
from gateway.errors import BadRequest, Forbidden
from gateway.logs import mask_phone
from gateway.metrics import WebMetrics

log = structlog.get_logger("gateway.webhooks.twilio")

# The headers Starlette's `Response(EMPTY_RESPONSE, media_type=CONTENT_TYPE)` sends, built
# once (each response gets its own list: the edge layer appends to it).
_TWIML_HEADERS = (
    (b"content-length", str(len(EMPTY_RESPONSE)).encode()),
    (b"content-type", f"{CONTENT_TYPE}; charset=utf-8".encode()),
)
_TWIML_BODY = {"type": "http.response.body", "body": EMPTY_RESPONSE, "more_body": False}
_SIGNATURE = SIGNATURE_HEADER.lower().encode("latin-1")
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower().encode("latin-1")


async def dev_auth_token(store: AsyncStore) -> str:
    """Without TWILIO_AUTH_TOKEN, webhooks are still signed, with a token kept in Redis
    (`chatgw chat` signs with it), so the development path is the production path."""
    return await store.run(health.dev_twilio_token())


def signed_form(state: Any, scope: Scope, raw: bytes, signature: str | None) -> dict[str, str]:
    """The decoded form of a Twilio webhook whose X-Twilio-Signature is the deployment's
    (unless TWILIO_VALIDATE_SIGNATURES=false); BadRequest or Forbidden otherwise."""
    try:
        params = parse_form(raw)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    settings = state.settings
    if settings.twilio.validate_signatures:
        # The route matched this path literally, so the scope's path is the URL's.
        url = webhook_url(settings.app.public_base_url, scope["path"], scope["query_string"].decode("latin-1"))
        if not verify(state.twilio_auth_token, url, params, signature):
            log.warning("twilio signature check failed", path=scope["path"])
            state.metrics.webhook(scope, "forged")
            raise Forbidden("invalid or missing X-Twilio-Signature")
    return params


async def request_form(request: Request) -> dict[str, str]:
    """`signed_form` for a handler that has a Starlette `Request` (the voice webhooks)."""
    return signed_form(request.app.state, request.scope, await request.body(), request.headers.get(SIGNATURE_HEADER))


Handle = Callable[[Any, Scope, dict[str, str], Mapping[str, str]], Awaitable[None]]


class SignedWebhook:
    """A signed Twilio webhook answering empty TwiML, as a plain ASGI app. `handle(state,
    scope, params, headers)` gets the verified form and the headers it may read (`headers`:
    the idempotency token, under IDEMPOTENCY_HEADER)."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.__name__ = handle.__name__  # the OpenAPI operationId

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signature: str | None = None
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == _SIGNATURE:
                signature = value.decode("latin-1")
            elif name == _IDEMPOTENCY:
                headers[IDEMPOTENCY_HEADER] = value.decode("latin-1")
        state = scope["app"].state
        params = signed_form(state, scope, await _body(receive), signature)
        await self.handle(state, scope, params, headers)
        await send({"type": "http.response.start", "status": 200, "headers": list(_TWIML_HEADERS)})
        await send(_TWIML_BODY)


async def _body(receive: Receive) -> bytes:
    """The whole request body (the edge layer has already applied the size limit)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def inbound_message(state: Any, scope: Scope, params: dict[str, str], headers: Mapping[str, str]) -> None:
    try:
        msg = parse_inbound(params, headers)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    metrics: WebMetrics = state.metrics
    if msg.is_empty:
        metrics.webhook(scope, "empty")
        return
    store: AsyncStore = state.store
    result = await store.run(inbound.receive(inbound.from_channel(msg)))
    metrics.inbound(scope, result.status)
    if result.status in inbound.UNROUTED:
        log.warning("message to a number no active agent owns", to=mask_phone(msg.to_address), status=result.status)


async def message_status(state: Any, scope: Scope, params: dict[str, str], headers: Mapping[str, str]) -> None:
    try:
        update = parse_status(params)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    store: AsyncStore = state.store
    outcome = await store.run(delivery.apply_status(update))
    state.metrics.status_callback(scope, outcome, update)


FORM = {"type": "object", "description": "Twilio's form-encoded webhook parameters, signed (X-Twilio-Signature)"}

ENDPOINTS = [
    Endpoint(
        "POST",
        "/twilio/messages",
        SignedWebhook(inbound_message),
        "Twilio incoming message webhook (SMS, MMS, WhatsApp); answers empty TwiML",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response={"type": "string"},
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature", "I-Twilio-Idempotency-Token"),
        asgi=True,
    ),
    Endpoint(
        "POST",
        "/twilio/messages/status",
        SignedWebhook(message_status),
        "Twilio message status callback",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response={"type": "string"},
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
        asgi=True,
    ),
]
