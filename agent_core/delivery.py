"""Delivering stored outbound messages over the customer's channel (SPEC §4.4, §7).

A message to deliver is stored first (delivery.status `pending`) together with a safety
task; `deliver` hands it to the channel's sender, records the provider's ids, and clears
the task. Parts the provider accepted are recorded before a retry, so a retry never sends
them again. Status callbacks move `delivery` forward only, whatever order they arrive in.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_core.models import Message, Role, Session, now_iso
from agent_core.store import Batch, Cmd, Lua, Store, keys, messages, sessions
from agent_core.store.runner import Op
from agent_core.support import outside_whatsapp_window
from channels.models import OutboundMessage, Sender, SendReceipt, StatusUpdate
from channels.twilio import PermanentDeliveryError, RetryableDeliveryError, is_newer, split_message, status_rank

log = logging.getLogger("agent_core.delivery")

PENDING = "pending"
DROPPED = "dropped"
DEV_OUTBOX = "dev_outbox"
DEV_OUTBOX_KEY = keys.P + "devoutbox"
DEV_OUTBOX_KEEP = 1000
CMID_TTL_S = 30 * 24 * 3600
STATUS_DEDUPE_TTL_S = 48 * 3600
FIND_WINDOW = 500


@dataclass(frozen=True)
class DeliveryConfig:
    status_callback_url: str | None
    messages_per_second: float = 10.0
    # Longer waits for a sender's rate are rescheduled, not slept: a sleeping worker thread
    # would hold up other agents' replies.
    max_wait_s: float = 0.25


class Throttled(Exception):
    """The sender is at its rate; deliver again in `retry_after` seconds (not a failure)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"sender at its rate; retry in {retry_after:.2f}s")
        self.retry_after = retry_after


def delivery_task(session_id: str, message_id: str, grace_ms: int = 120_000) -> tuple[str, float, str]:
    return (keys.TASKS, time.time() * 1000 + grace_ms, f"deliver:{session_id}:{message_id}")


def pending(at: str) -> dict[str, Any]:
    return {"status": PENDING, "updated_at": at}


class DevOutbox:
    """The sender used without Twilio credentials: keeps messages in Redis, sends nothing."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def send(self, message: OutboundMessage) -> SendReceipt:
        parts = split_message(message.text) if message.text else []
        count = max(1, len(parts))
        sids = ["SMdev" + uuid.uuid4().hex[:27] for _ in range(count)]
        entry = {
            "not_sent": "dev outbox: Twilio is not configured, nothing was sent",
            "channel": message.channel,
            "to": message.to,
            "from": message.from_ or message.messaging_service_sid,
            "text": message.text,
            "parts": parts or [message.text],
            "media_urls": message.media_urls,
            "content_sid": message.content_sid,
            "content_variables": message.content_variables,
            "sids": sids,
            "created_at": now_iso(),
        }
        raw = json.dumps(entry, ensure_ascii=False)
        self.store.run(_dev_push(raw, message.to))
        return SendReceipt(channel_message_ids=sids, parts=count, status=DEV_OUTBOX)


def _dev_push(raw: str, to: str) -> Op[None]:
    yield Batch(
        Cmd("LPUSH", DEV_OUTBOX_KEY, raw),
        Cmd("LTRIM", DEV_OUTBOX_KEY, 0, DEV_OUTBOX_KEEP - 1),
        Cmd("PUBLISH", keys.NOTIFY_LIVE, json.dumps({"type": "dev_outbox", "session_id": "", "to": to})),
    )


def dev_outbox(limit: int = 50) -> Op[list[dict[str, Any]]]:
    raw = yield Cmd("LRANGE", DEV_OUTBOX_KEY, 0, limit - 1)
    return [json.loads(r) for r in raw]


def find_message(session: Session, message_id: str) -> Op[Message | None]:
    recent = yield from messages.recent(session.id, session.seq, FIND_WINDOW)
    return next((m for m in reversed(recent) if m.id == message_id), None)


def _finish(session_id: str, message_id: str) -> Op[None]:
    yield Cmd("ZREM", keys.TASKS, f"deliver:{session_id}:{message_id}")


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


def _sender_of(session: Session) -> str:
    return session.agent_address or session.messaging_service_sid or "default"


def deliver(
    store: Store,
    senders: Mapping[str, Sender],
    config: DeliveryConfig,
    session_id: str,
    message_id: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Hand one stored message to its channel. Raises RetryableDeliveryError to be retried."""
    session = store.run(sessions.get(session_id))
    if session is None:
        store.run(_finish(session_id, message_id))
        return "gone"
    msg = store.run(find_message(session, message_id))
    if msg is None:
        store.run(_finish(session_id, message_id))
        return "missing"
    if msg.delivery is None or msg.delivery.status != PENDING:
        store.run(_finish(session_id, message_id))
        return "already"
    drop = None
    if session.opted_out:
        drop = "the customer opted out (STOP)"
    elif msg.role is Role.agent and outside_whatsapp_window(session):
        drop = "outside the WhatsApp 24-hour window"
    if drop:
        store.run(messages.update(session.id, msg.seq, _record(status=DROPPED, error_message=drop)))
        store.run(_finish(session_id, message_id))
        return "dropped"
    meta = msg.meta
    sent_parts = {int(k): v for k, v in (meta.get("sent_parts") or {}).items()}
    outbound = OutboundMessage.model_validate(
        {
            "channel": session.channel.value,
            "to": session.customer_address or session.customer_id,
            "from": session.agent_address,
            "messaging_service_sid": session.messaging_service_sid if not session.agent_address else None,
            "text": "" if meta.get("content_sid") else msg.text,
            "media_urls": [m.url for m in msg.media],
            "content_sid": meta.get("content_sid"),
            "content_variables": meta.get("content_variables"),
            "status_callback": config.status_callback_url,
            "sent_parts": sent_parts,
        }
    )
    total = 1 if outbound.content_sid else max(1, len(split_message(outbound.text)))
    reserved, wait_ms = store.run(
        _throttle(_sender_of(session), config.messages_per_second, total - len(sent_parts), config.max_wait_s)
    )
    if not reserved:
        raise Throttled(wait_ms / 1000)
    if wait_ms > 0:
        sleep(wait_ms / 1000)
    sender = senders[session.channel.value]
    lock = f"{keys.P}sendlock:{message_id}"
    if not store.run(_lock(lock, int((config.max_wait_s + 60) * 1000))):
        return "busy"
    try:
        try:
            receipt = sender.send(outbound)
        except RetryableDeliveryError as exc:
            store.run(messages.update(session.id, msg.seq, _record(sent_parts=exc.sent_parts)))
            raise
        except PermanentDeliveryError as exc:
            store.run(_fail(session, msg, exc))
            store.run(_finish(session_id, message_id))
            return "failed"
        # Recorded before the lock is released, so no other delivery can see it pending.
        store.run(_sent(session, msg, receipt))
        store.run(_finish(session_id, message_id))
        return "sent"
    finally:
        store.run(_unlock(lock))


def _lock(key: str, ttl_ms: int) -> Op[bool]:
    # Two deliveries of one message (a retry and a sweep's safety net) must never overlap.
    ok = yield Cmd("SET", key, "1", "NX", "PX", ttl_ms)
    return bool(ok)


def _unlock(key: str) -> Op[None]:
    yield Cmd("DEL", key)


def reschedule(session_id: str, message_id: str, delay_s: float) -> Op[None]:
    """Move the safety task past a scheduled retry so the sweep does not race it."""
    yield Cmd(
        "ZADD", keys.TASKS, "XX", int((time.time() + delay_s) * 1000) + 120_000, f"deliver:{session_id}:{message_id}"
    )


def give_up(session_id: str, message_id: str, reason: str) -> Op[None]:
    session = yield from sessions.get(session_id)
    if session is None:
        return
    msg = yield from find_message(session, message_id)
    if msg is not None:
        yield from messages.update(session_id, msg.seq, _record(status="failed", error_message=reason))
        yield from _session_error(session_id, message_id, None, reason)
    yield from _finish(session_id, message_id)


def _throttle(sender: str, mps: float, parts: int, max_wait_s: float) -> Op[tuple[bool, int]]:
    reply = yield Lua("throttle", sender, 1000.0 / mps, max(parts, 0), int(time.time() * 1000), int(max_wait_s * 1000))
    return reply[0] == 1, int(reply[1])


def _sent(session: Session, msg: Message, receipt: SendReceipt) -> Op[None]:
    sids = receipt.channel_message_ids
    yield from messages.update(
        session.id,
        msg.seq,
        _record(
            status=receipt.status,
            parts=receipt.parts,
            channel_message_id=sids[0] if sids else None,
            sids=sids,
            sent_parts={},
        ),
    )
    yield Batch(
        *(
            Cmd("SET", keys.channel_message(sid), f"{session.id}:{msg.seq}:{i}", "EX", CMID_TTL_S)
            for i, sid in enumerate(sids)
        )
    )
    for sid in sids:
        early = yield Cmd("LRANGE", _early_key(sid), 0, -1)
        if early:
            yield Cmd("DEL", _early_key(sid))
            for raw in early:
                yield from apply_status(StatusUpdate.model_validate_json(raw))


def _early_key(message_sid: str) -> str:
    return f"{keys.P}early:{message_sid}"


def _fail(session: Session, msg: Message, exc: PermanentDeliveryError) -> Op[None]:
    reason = str(exc)
    yield from messages.update(
        session.id,
        msg.seq,
        _record(status="failed", error_code=exc.code, error_message=reason, sent_parts=exc.sent_parts),
    )
    yield from _session_error(session.id, msg.id, exc.code, reason)


def _session_error(session_id: str, message_id: str, code: int | None, reason: str) -> Op[None]:
    changes: dict[str, Any] = {
        "delivery_error": {"code": code, "message": reason, "message_id": message_id, "at": now_iso()}
    }
    if code == 21610:
        # Twilio refuses to send to numbers that texted STOP; the session must show why.
        changes["opted_out"] = True
    yield from sessions.commit(session_id, set=changes)


def apply_status(update: StatusUpdate) -> Op[str]:
    """Apply a delivery status callback once; statuses never move backwards."""
    first = yield Cmd(
        "SET", keys.dedupe("status", f"{update.message_sid}:{update.status}"), "1", "NX", "EX", STATUS_DEDUPE_TTL_S
    )
    if not first:
        return "duplicate"
    ref = yield Cmd("GET", keys.channel_message(update.message_sid))
    if not ref:
        # A callback can beat us recording the SID Twilio just returned: hold it briefly and
        # apply it once the SID is recorded (_sent), instead of losing it.
        yield Batch(
            Cmd("DEL", keys.dedupe("status", f"{update.message_sid}:{update.status}")),
            Cmd("RPUSH", _early_key(update.message_sid), update.model_dump_json()),
            Cmd("EXPIRE", _early_key(update.message_sid), 600),
        )
        return "early"
    sid, seq_s, part_s = ref.split(":")
    seq, part = int(seq_s), int(part_s)

    def change(msg: dict[str, Any]) -> dict[str, Any] | None:
        meta = dict(msg.get("meta") or {})
        parts = dict(meta.get("part_status") or {})
        if not is_newer(parts.get(str(part)), update.status):
            return None
        parts[str(part)] = update.status
        meta["part_status"] = parts
        msg["meta"] = meta
        count = int(msg.get("parts") or 1)
        statuses = [parts.get(str(i), "queued") for i in range(count)]
        # The message is as far along as its least advanced part (a failed part shows failed).
        failed = [s for s in statuses if s in ("failed", "undelivered")]
        overall = failed[0] if failed else min(statuses, key=status_rank)
        current = (msg.get("delivery") or {}).get("status")
        if current in (PENDING, DEV_OUTBOX, DROPPED, None) or is_newer(current, overall) or failed:
            delivery = {"status": overall, "updated_at": now_iso()}
            if update.error_code is not None:
                delivery["error_code"] = update.error_code
                delivery["error_message"] = update.error_message
            msg["delivery"] = delivery
        return msg

    updated = yield from messages.update(sid, seq, change)
    if updated is None:
        return "unknown"
    if update.status in ("failed", "undelivered"):
        reason = update.error_message or f"Twilio reported {update.status}"
        yield from _session_error(sid, updated.id, update.error_code, reason)
    return "applied"
