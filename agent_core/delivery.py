"""Delivering stored outbound messages over the customer's channel (SPEC §4.4, §7).

A message to deliver is stored first (delivery status `pending`) with its `deliver` work;
`Deliverer.deliver` reads it, refuses what the channel must not carry, waits for the
sender's rate, hands it to the channel's Sender, records the provider's ids and settles
the work. Parts the provider accepted are recorded before a retry, so a retry never sends
them again. A sender at its rate or a retryable failure is retried later through
`retry_later` (the queue's scheduler), never by holding a worker. Status callbacks
(`apply_status`) move `delivery` forward only, whatever order they arrive in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent_core.models import Channel, Message, Role, Session, now_iso
from agent_core.store import Change, Store, Work, messages, outbound, sessions, tasks
from agent_core.store.runner import Op
from channels.models import (
    DeliveryStatus,
    OutboundMessage,
    PermanentDeliveryError,
    RetryableDeliveryError,
    Sender,
    StatusUpdate,
    is_newer,
)

log = logging.getLogger("agent_core.delivery")

# Our statuses a provider status always replaces.
_OURS = (DeliveryStatus.pending, DeliveryStatus.dev_outbox, DeliveryStatus.dropped, None)


class DeliveryOutcome(StrEnum):
    sent = "sent"
    failed = "failed"
    dropped = "dropped"
    already = "already"
    missing = "missing"
    gone = "gone"
    busy = "busy"
    throttled = "throttled"
    retrying = "retrying"
    gave_up = "gave up"


@dataclass(frozen=True)
class DeliveryConfig:
    status_callback_url: str | None
    messages_per_second: float = 10.0
    # Longer waits for a sender's rate are rescheduled, not slept: a sleeping worker thread
    # would hold up other agents' replies.
    max_wait_s: float = 0.25


class Throttled(Exception):
    """The sender is at its rate; its slot is held: deliver in `retry_after` seconds, without
    reserving again (not a failure)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"sender at its rate; retry in {retry_after:.2f}s")
        self.retry_after = retry_after


# (session id, message id, attempt, delay in seconds, slot held): run `deliver` again then.
RetryLater = Callable[[str, str, int, float, bool], None]


@dataclass
class Deliverer:
    """Delivers stored messages through the channel registry `senders`. `backoff_s[attempt]`
    is the wait before retry `attempt`; after len(backoff_s) - 1 retries it gives up."""

    store: Store
    senders: Mapping[Channel, Sender]
    config: DeliveryConfig
    retry_later: RetryLater
    backoff_s: Sequence[float]
    sleep: Callable[[float], None] = time.sleep

    def deliver(
        self, session_id: str, message_id: str, attempt: int = 0, *, slot_held: bool = False
    ) -> DeliveryOutcome:
        """Deliver one stored message now, or arrange for it to be delivered later.
        `slot_held`: this attempt runs at send slots reserved for it (see Throttled)."""
        try:
            return self._attempt(session_id, message_id, slot_held)
        except Throttled as exc:
            self._later(session_id, message_id, attempt, exc.retry_after, counts=False, slot_held=True)
            return DeliveryOutcome.throttled
        except RetryableDeliveryError as exc:
            return self._later(session_id, message_id, attempt + 1, exc.retry_after, reason=str(exc))

    def _attempt(self, session_id: str, message_id: str, slot_held: bool) -> DeliveryOutcome:
        work = Work.deliver(session_id, message_id)
        session = self.store.run(sessions.get(session_id))
        msg = self.store.run(messages.find(session_id, session.seq, message_id)) if session else None
        early = _settled(session, msg)
        if early is not None:
            self.store.run(tasks.done(work))
            return early
        assert session is not None and msg is not None
        drop = _drop_reason(session, msg)
        if drop:
            self.store.run(
                messages.update(session.id, msg.seq, _record(status=DeliveryStatus.dropped, error_message=drop))
            )
            self.store.run(tasks.done(work))
            return DeliveryOutcome.dropped
        message = _outbound(session, msg, self.config)
        sender = self.senders[message.channel]
        if not slot_held:
            self._reserve(message, sender.parts(message) - len(message.sent_parts))
        if not self.store.run(outbound.lock_send(message_id, int((self.config.max_wait_s + 60) * 1000))):
            return DeliveryOutcome.busy
        try:
            return self._send(sender, session, msg, message, work)
        finally:
            self.store.run(outbound.unlock_send(message_id))

    def _reserve(self, message: OutboundMessage, parts: int) -> None:
        cfg = self.config
        sender = message.from_ or message.messaging_service_sid or "default"
        reserved, wait_ms = self.store.run(outbound.reserve(sender, cfg.messages_per_second, parts, cfg.max_wait_s))
        if not reserved:
            raise Throttled(wait_ms / 1000)
        if wait_ms > 0:
            self.sleep(wait_ms / 1000)

    def _send(
        self, sender: Sender, session: Session, msg: Message, message: OutboundMessage, work: Work
    ) -> DeliveryOutcome:
        try:
            receipt = sender.send(message)
        except RetryableDeliveryError as exc:
            self.store.run(messages.update(session.id, msg.seq, _record(sent_parts=exc.sent_parts)))
            raise
        except PermanentDeliveryError as exc:
            self.store.run(_fail(session, msg, exc))
            self.store.run(tasks.done(work))
            return DeliveryOutcome.failed
        # Recorded before the send lock is released, so no other delivery can see it pending.
        ids = receipt.channel_message_ids
        self.store.run(
            messages.update(
                session.id,
                msg.seq,
                _record(
                    status=receipt.status,
                    parts=receipt.parts,
                    channel_message_id=ids[0] if ids else None,
                    sids=ids,
                    sent_parts={},
                ),
            )
        )
        for raw in self.store.run(outbound.record_ids(session.id, msg.seq, ids)):
            self.store.run(apply_status(StatusUpdate.model_validate_json(raw)))
        self.store.run(tasks.done(work))
        return DeliveryOutcome.sent

    def _later(
        self,
        session_id: str,
        message_id: str,
        attempt: int,
        retry_after: float | None,
        *,
        reason: str = "",
        counts: bool = True,
        slot_held: bool = False,
    ) -> DeliveryOutcome:
        """Deliver again after the backoff for `attempt` (and Retry-After), or, for a sender at
        its rate (`counts` False), exactly when its slot comes up."""
        if attempt >= len(self.backoff_s):
            self.store.run(give_up(session_id, message_id, f"gave up after {attempt} attempts: {reason}"))
            return DeliveryOutcome.gave_up
        delay = max(retry_after or 0.0, self.backoff_s[attempt] if counts else 0.0)
        self.store.run(tasks.postpone(Work.deliver(session_id, message_id), delay))
        self.retry_later(session_id, message_id, attempt, delay, slot_held)
        if counts:
            log.warning("delivery of %s retries in %.0fs (attempt %d): %s", message_id, delay, attempt, reason)
        return DeliveryOutcome.retrying


def _settled(session: Session | None, msg: Message | None) -> DeliveryOutcome | None:
    """Why there is nothing to deliver, if there is not."""
    if session is None:
        return DeliveryOutcome.gone
    if msg is None:
        return DeliveryOutcome.missing
    if msg.delivery is None or msg.delivery.status is not DeliveryStatus.pending:
        return DeliveryOutcome.already
    return None


def _channel_of(session: Session, msg: Message) -> Channel:
    # Messages written before each recorded its channel go where the session is.
    return msg.channel or session.channel


def _drop_reason(session: Session, msg: Message) -> str | None:
    """What the message's channel must not carry now: anything to a customer opted out there,
    an AI reply outside the channel's window (an operator's text was refused when written)."""
    channel = _channel_of(session, msg)
    if session.use_of(channel).opted_out:
        return "the customer opted out (STOP)"
    if msg.role is Role.agent and session.outside_window(channel):
        return session.window_refusal(channel)
    return None


def _outbound(session: Session, msg: Message, config: DeliveryConfig) -> OutboundMessage:
    meta = msg.meta
    route = msg.route or {
        "to": session.customer_address or session.customer_id,
        "from": session.agent_address or "",
        "messaging_service_sid": session.messaging_service_sid or "",
    }
    # A number it came to is answered from; a Messaging Service only when there is none.
    service = None if route["from"] else route["messaging_service_sid"] or None
    return OutboundMessage.model_validate(
        {
            "channel": _channel_of(session, msg),
            "to": route["to"],
            "from": route["from"] or None,
            "messaging_service_sid": service,
            "text": "" if meta.get("content_sid") else msg.text,
            "media_urls": [m.url for m in msg.media],
            "content_sid": meta.get("content_sid"),
            "content_variables": meta.get("content_variables"),
            "status_callback": config.status_callback_url,
            "sent_parts": {int(k): v for k, v in (meta.get("sent_parts") or {}).items()},
        }
    )


def _record(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A message update for messages.update (called again on a compare-and-set retry)."""

    def change(msg: dict[str, Any]) -> dict[str, Any]:
        delivery_fields = dict(changes)
        meta = dict(msg.get("meta") or {})
        sent_parts = delivery_fields.pop("sent_parts", None)
        if sent_parts is not None:
            meta["sent_parts"] = {str(k): v for k, v in sent_parts.items()}
        for key in ("parts", "channel_message_id"):
            if key in delivery_fields:
                msg[key] = delivery_fields.pop(key)
        if "sids" in delivery_fields:
            meta["sids"] = delivery_fields.pop("sids")
        msg["meta"] = meta
        if delivery_fields:
            msg["delivery"] = {**delivery_fields, "updated_at": now_iso()}
        return msg

    return change


def give_up(session_id: str, message_id: str, reason: str) -> Op[None]:
    session = yield from sessions.get(session_id)
    if session is None:
        return
    msg = yield from messages.find(session_id, session.seq, message_id)
    if msg is not None:
        yield from messages.update(session_id, msg.seq, _record(status=DeliveryStatus.failed, error_message=reason))
        yield from _session_error(session_id, message_id, None, reason)
    yield from tasks.done(Work.deliver(session_id, message_id))


def _fail(session: Session, msg: Message, exc: PermanentDeliveryError) -> Op[None]:
    reason = str(exc)
    yield from messages.update(
        session.id,
        msg.seq,
        _record(status=DeliveryStatus.failed, error_code=exc.code, error_message=reason, sent_parts=exc.sent_parts),
    )
    opted_out = _channel_of(session, msg) if exc.opted_out else None
    yield from _session_error(session.id, msg.id, exc.code, reason, opted_out_on=opted_out)


def _session_error(
    session_id: str, message_id: str, code: int | None, reason: str, *, opted_out_on: Channel | None = None
) -> Op[None]:
    """Record a delivery failure on the session; the provider refusing a customer who
    unsubscribed on a channel opts them out there (the session must show why)."""

    def plan(session: Session) -> Change:
        changes: dict[str, Any] = {
            "delivery_error": {"code": code, "message": reason, "message_id": message_id, "at": now_iso()}
        }
        if opted_out_on is not None:
            changes[f"opted_out:{opted_out_on.value}"] = True
            if opted_out_on is session.channel:
                changes["opted_out"] = True
        return Change(set=changes)

    yield from sessions.update(session_id, plan)


class StatusOutcome(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    early = "early"
    unknown = "unknown"
    # Older than what the part already reached (a late `sending` after `delivered`): nothing written.
    stale = "stale"


def apply_status(update: StatusUpdate) -> Op[StatusOutcome]:
    """Apply a delivery status callback once; statuses never move backwards."""
    if not (yield from outbound.first_status(update.message_sid, update.status)):
        return StatusOutcome.duplicate
    ref = yield from outbound.part_of(update.message_sid)
    if ref is None:
        # A callback can beat us recording the id the provider just returned: hold it briefly
        # and apply it once the id is recorded (Deliverer._send), instead of losing it.
        yield from outbound.hold_early(update.message_sid, update.status, update.model_dump_json())
        return StatusOutcome.early
    sid, seq, part = ref
    changed: list[bool] = []
    updated = yield from messages.update(sid, seq, _status_change(update, part, changed))
    if updated is None:
        return StatusOutcome.unknown
    if not changed[-1]:
        return StatusOutcome.stale
    if update.status.failure:
        reason = update.error_message or f"the provider reported {update.status.value}"
        opted_out = (updated.channel or update.channel) if update.opted_out else None
        yield from _session_error(sid, updated.id, update.error_code, reason, opted_out_on=opted_out)
    return StatusOutcome.applied


def _status_change(
    update: StatusUpdate, part: int, changed: list[bool]
) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The change a status makes to the message; `changed` gets, per attempt, whether it was newer."""

    def change(msg: dict[str, Any]) -> dict[str, Any] | None:
        meta = dict(msg.get("meta") or {})
        parts = dict(meta.get("part_status") or {})
        known = parts.get(str(part))
        newer = is_newer(DeliveryStatus(known) if known else None, update.status)
        changed.append(newer)
        if not newer:
            return None
        parts[str(part)] = update.status.value
        meta["part_status"] = parts
        msg["meta"] = meta
        count = int(msg.get("parts") or 1)
        statuses = [DeliveryStatus(parts.get(str(i), DeliveryStatus.queued)) for i in range(count)]
        # The message is as far along as its least advanced part (a failed part shows failed).
        failed = [s for s in statuses if s.failure]
        overall = failed[0] if failed else min(statuses, key=lambda s: s.rank)
        raw_current = (msg.get("delivery") or {}).get("status")
        current = DeliveryStatus(raw_current) if raw_current else None
        if current in _OURS or is_newer(current, overall) or failed:
            delivery: dict[str, Any] = {"status": overall.value, "updated_at": now_iso()}
            if update.error_code is not None:
                delivery["error_code"] = update.error_code
                delivery["error_message"] = update.error_message
            msg["delivery"] = delivery
        return msg

    return change
