"""Twilio messaging webhooks (SPEC §7): verify, parse, persist + enqueue, acknowledge.

The inbound webhook never calls the LLM or Twilio's REST API: one Lua round trip stores
the message (deduplicated by MessageSid and I-Twilio-Idempotency-Token) and queues the
turn, then empty TwiML goes back. An unknown number gets 200 too (a 5xx would make
Twilio retry forever); it is logged and counted.
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response

from agent_core import delivery, inbound
from agent_core.store import AsyncStore, health
from channels.twilio import (
    CONTENT_TYPE,
    EMPTY_RESPONSE,
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
from gateway.metrics import metrics_of

log = structlog.get_logger("gateway.webhooks.twilio")


def twiml() -> Response:
    return Response(EMPTY_RESPONSE, media_type=CONTENT_TYPE)


async def dev_auth_token(store: AsyncStore) -> str:
    """Without TWILIO_AUTH_TOKEN, webhooks are still signed, with a token kept in Redis
    (`chatgw chat` signs with it), so the development path is the production path."""
    return await store.run(health.dev_twilio_token())


async def _form(request: Request) -> dict[str, str]:
    settings = request.app.state.settings
    raw = await request.body()
    try:
        params = parse_form(raw)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    if settings.twilio.validate_signatures:
        # The route matched this path literally, so the scope's path is the URL's (Starlette's
        # `request.url` would build and parse a whole URL for it).
        scope = request.scope
        url = webhook_url(settings.app.public_base_url, scope["path"], scope["query_string"].decode("latin-1"))
        token = request.app.state.twilio_auth_token
        if not verify(token, url, params, request.headers.get(SIGNATURE_HEADER)):
            log.warning("twilio signature check failed", path=request.url.path)
            metrics_of(request).webhook(request, "forged")
            raise Forbidden("invalid or missing X-Twilio-Signature")
    return params


async def inbound_message(request: Request) -> Response:
    params = await _form(request)
    try:
        msg = parse_inbound(params, request.headers)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    if msg.is_empty:
        metrics_of(request).webhook(request, "empty")
        return twiml()
    store: AsyncStore = request.app.state.store
    result = await store.run(inbound.receive(inbound.from_channel(msg)))
    metrics_of(request).inbound(request, result.status)
    if result.status in inbound.UNROUTED:
        log.warning("message to a number no active agent owns", to=mask_phone(msg.to_address), status=result.status)
    return twiml()


async def message_status(request: Request) -> Response:
    params = await _form(request)
    try:
        update = parse_status(params)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    store: AsyncStore = request.app.state.store
    outcome = await store.run(delivery.apply_status(update))
    metrics_of(request).status_callback(request, outcome, update)
    return twiml()


FORM = {"type": "object", "description": "Twilio's form-encoded webhook parameters, signed (X-Twilio-Signature)"}

ENDPOINTS = [
    Endpoint(
        "POST",
        "/twilio/messages",
        inbound_message,
        "Twilio incoming message webhook (SMS, MMS, WhatsApp); answers empty TwiML",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response={"type": "string"},
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature", "I-Twilio-Idempotency-Token"),
    ),
    Endpoint(
        "POST",
        "/twilio/messages/status",
        message_status,
        "Twilio message status callback",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response={"type": "string"},
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
    ),
]
