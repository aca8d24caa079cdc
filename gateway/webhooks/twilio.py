"""Twilio messaging webhooks (SPEC §7): verify, parse, persist + enqueue, acknowledge.

The inbound webhook never calls the LLM or Twilio's REST API: one Lua round trip stores
the message (deduplicated by MessageSid and I-Twilio-Idempotency-Token) and queues the
turn, then empty TwiML goes back. An unknown number gets 200 too (a 5xx would make
Twilio retry forever); it is logged and counted.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from agent_core import delivery
from agent_core.models import Channel, now_iso
from agent_core.store import AsyncStore, Cmd, keys, sessions
from channels.models import InboundMessage
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
from workers.queues import turn_job

log = structlog.get_logger("gateway.webhooks.twilio")
DEV_TOKEN_KEY = keys.P + "dev:twilio_auth_token"


def twiml() -> Response:
    return Response(EMPTY_RESPONSE, media_type=CONTENT_TYPE)


async def dev_auth_token(store: AsyncStore) -> str:
    """Without TWILIO_AUTH_TOKEN, webhooks are still signed, with a token kept in Redis
    (`chatgw chat` signs with it), so the development path is the production path."""
    token = secrets.token_hex(16)
    created = await store.run(_set_nx(DEV_TOKEN_KEY, token))
    if created:
        return token
    existing = await store.run(_get(DEV_TOKEN_KEY))
    return str(existing)


def _set_nx(key: str, value: str) -> Any:
    ok = yield Cmd("SET", key, value, "NX")
    return ok


def _get(key: str) -> Any:
    value = yield Cmd("GET", key)
    return value


async def _form(request: Request) -> dict[str, str]:
    settings = request.app.state.settings
    raw = await request.body()
    try:
        params = parse_form(raw)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    if settings.twilio.validate_signatures:
        url = webhook_url(settings.app.public_base_url, request.url.path, request.url.query)
        token = request.app.state.twilio_auth_token
        if not verify(token, url, params, request.headers.get(SIGNATURE_HEADER)):
            log.warning("twilio signature check failed", path=request.url.path)
            raise Forbidden("invalid or missing X-Twilio-Signature")
    return params


def agent_text(msg: InboundMessage) -> str:
    """What the agent reads: the text, or a description of a button reply or a location."""
    if msg.text:
        return msg.text
    if msg.button:
        return str(msg.button.get("text") or msg.button.get("payload") or "")
    if msg.location:
        loc = msg.location
        where = ", ".join(str(v) for v in (loc.get("label"), loc.get("address")) if v)
        return f"[Shared a location: {loc.get('latitude')}, {loc.get('longitude')}{' — ' + where if where else ''}]"
    return ""


async def inbound_message(request: Request) -> Response:
    params = await _form(request)
    try:
        msg = parse_inbound(params, request.headers)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    if msg.is_empty:
        return twiml()
    store: AsyncStore = request.app.state.store
    meta: dict[str, Any] = {}
    if msg.location:
        meta["location"] = msg.location
    if msg.button:
        meta["button"] = msg.button
    if msg.raw:
        meta["raw"] = msg.raw
    record = sessions.new_message(
        "customer",
        agent_text(msg),
        created_at=now_iso(),
        media=[m.model_dump() for m in msg.media],
        channel_message_id=msg.message_sid,
        kind=msg.keyword.value if msg.keyword else None,
        meta=meta,
    )
    dedupe = [keys.dedupe("sm", msg.message_sid)]
    if msg.idempotency_token:
        dedupe.append(keys.dedupe("idem", msg.idempotency_token))
    route = [msg.to_address]
    if msg.messaging_service_sid:
        route.append("mss:" + msg.messaging_service_sid)
    result = await store.run(
        sessions.ingest(
            customer_id=msg.customer_id,
            channel=Channel(msg.channel),
            message=record,
            job=turn_job(),
            route=route,
            customer_address=msg.from_address,
            kind=msg.keyword.value if msg.keyword else "message",
            dedupe=dedupe,
            profile_name=msg.profile_name or "",
            agent_address=msg.to_address,
            messaging_service_sid=msg.messaging_service_sid,
        )
    )
    if result.status in ("no_agent", "archived"):
        await store.run(_count("unknown_number"))
        log.warning("message to a number no active agent owns", to=mask_phone(msg.to_address), status=result.status)
    return twiml()


def _count(name: str) -> Any:
    yield Cmd("HINCRBY", keys.COUNTERS, name, 1)


async def message_status(request: Request) -> Response:
    params = await _form(request)
    try:
        update = parse_status(params)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    store: AsyncStore = request.app.state.store
    await store.run(delivery.apply_status(update))
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
