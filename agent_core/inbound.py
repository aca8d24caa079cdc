"""A customer said something (SPEC §4.1): the one entry every channel uses.

Twilio's webhook, the Chat API's inbound call (and next the widget and voice) turn what
they received into a `CustomerMessage`; `receive` stores it with its session (found,
created or woken) and queues the turn, in one store round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_core.models import Channel, Media, MessageKind, Role, now_iso
from agent_core.store import IngestResult, IngestStatus, Op, agents, health, sessions
from channels.models import InboundMessage

UNROUTED = (IngestStatus.no_agent, IngestStatus.archived)


@dataclass(frozen=True)
class CustomerMessage:
    """What a customer sent, channel-neutral. The agent is named (`agent_id`, the API) or
    found by the address the message was sent to (`route`, Twilio). `dedupe` are
    (namespace, value) pairs: a message repeating any of them is a duplicate."""

    channel: Channel
    customer_id: str
    text: str
    agent_id: str = ""
    route: tuple[str, ...] = ()
    session_id: str = ""
    customer_address: str | None = None
    agent_address: str | None = None
    messaging_service_sid: str | None = None
    media: tuple[Media, ...] = ()
    channel_message_id: str | None = None
    kind: MessageKind | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    dedupe: tuple[tuple[str, str], ...] = ()
    profile_name: str = ""
    # The input_fields of a session this message opens (e.g. a widget visitor's lead).
    input_fields: Mapping[str, Any] = field(default_factory=dict)


def receive(msg: CustomerMessage) -> Op[IngestResult]:
    """Store the message and queue the session's turn; a message no active agent owns is
    counted (`unknown_number`) and stores nothing."""
    record = sessions.new_message(
        Role.customer,
        msg.text,
        created_at=now_iso(),
        media=[m.model_dump() for m in msg.media],
        channel_message_id=msg.channel_message_id,
        channel=msg.channel.value,
        kind=msg.kind,
        meta=dict(msg.meta),
    )
    result = yield from sessions.ingest(
        customer_id=msg.customer_id,
        channel=msg.channel,
        message=record,
        agent_id=msg.agent_id,
        route=msg.route,
        customer_address=msg.customer_address,
        session_id=msg.session_id,
        kind=msg.kind.value if msg.kind and msg.kind.keyword else "message",
        dedupe=msg.dedupe,
        profile_name=msg.profile_name,
        input_fields=msg.input_fields,
        agent_address=msg.agent_address,
        messaging_service_sid=msg.messaging_service_sid,
    )
    if result.status in UNROUTED and msg.route:
        yield from health.count("unknown_number")
    return result


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


def from_channel(msg: InboundMessage) -> CustomerMessage:
    """A message from a messaging channel (SMS, WhatsApp), deduplicated by its provider ids."""
    meta: dict[str, Any] = {}
    if msg.location:
        meta["location"] = msg.location
    if msg.button:
        meta["button"] = msg.button
    if msg.raw:
        meta["raw"] = msg.raw
    dedupe = [("sm", msg.message_sid)]
    if msg.idempotency_token:
        dedupe.append(("idem", msg.idempotency_token))
    return CustomerMessage(
        channel=msg.channel,
        customer_id=msg.customer_id,
        text=agent_text(msg),
        route=agents.routes_to(msg.to_address, msg.messaging_service_sid),
        customer_address=msg.from_address,
        agent_address=msg.to_address,
        messaging_service_sid=msg.messaging_service_sid,
        media=tuple(msg.media),
        channel_message_id=msg.message_sid,
        kind=MessageKind(msg.keyword.value) if msg.keyword else None,
        meta=meta,
        dedupe=tuple(dedupe),
        profile_name=msg.profile_name or "",
    )
