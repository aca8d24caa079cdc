"""The Redis side of delivering messages: sender rates, the per-message send lock, the map
from provider message ids to stored messages, status callbacks that arrive early, status
dedupe, and the dev outbox."""

from __future__ import annotations

import json
from typing import Any

from agent_core.models import now_ms
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Lua, Op

CHANNEL_MESSAGE_TTL_S = 30 * 24 * 3600
STATUS_DEDUPE_TTL_S = 48 * 3600
EARLY_TTL_S = 600
DEV_OUTBOX_KEEP = 1000


def reserve(sender: str, messages_per_second: float, parts: int, max_wait_s: float) -> Op[tuple[bool, int]]:
    """Reserve `parts` send slots at the sender's rate (GCRA, lua/throttle.lua) if the wait is
    at most `max_wait_s`: (True, ms to wait first) or (False, ms until it is worth asking again)."""
    reply = yield Lua(
        "throttle",
        keys.send_rate(sender),
        1000.0 / messages_per_second,
        max(parts, 0),
        now_ms(),
        int(max_wait_s * 1000),
        "reserve",
    )
    return reply[0] == 1, int(reply[1])


def lock_send(message_id: str, ttl_ms: int) -> Op[bool]:
    # Two deliveries of one message (a retry and a sweep's safety net) must never overlap.
    ok = yield Cmd("SET", keys.send_lock(message_id), "1", "NX", "PX", ttl_ms)
    return bool(ok)


def unlock_send(message_id: str) -> Op[None]:
    yield Cmd("DEL", keys.send_lock(message_id))


def record_ids(session_id: str, seq: int, channel_message_ids: list[str]) -> Op[list[str]]:
    """Map each part's provider id to (session, seq, part); returns the statuses that arrived
    for them before this (see `hold_early`), removed from the hold."""
    yield Batch(
        *(
            Cmd("SET", keys.channel_message(cmid), f"{session_id}:{seq}:{i}", "EX", CHANNEL_MESSAGE_TTL_S)
            for i, cmid in enumerate(channel_message_ids)
        )
    )
    early: list[str] = []
    for cmid in channel_message_ids:
        held = yield Cmd("LRANGE", keys.early_statuses(cmid), 0, -1)
        if held:
            yield Cmd("DEL", keys.early_statuses(cmid))
            early.extend(held)
    return early


def part_of(channel_message_id: str) -> Op[tuple[str, int, int] | None]:
    """(session id, seq, part index) of a provider message id we recorded."""
    ref = yield Cmd("GET", keys.channel_message(channel_message_id))
    if not ref:
        return None
    sid, seq, part = ref.split(":")
    return sid, int(seq), int(part)


def first_status(channel_message_id: str, status: str) -> Op[bool]:
    """True the first time this (id, status) is seen (callbacks are retried)."""
    ok = yield Cmd("SET", keys.dedupe("status", f"{channel_message_id}:{status}"), "1", "NX", "EX", STATUS_DEDUPE_TTL_S)
    return bool(ok)


def hold_early(channel_message_id: str, status: str, update_json: str) -> Op[None]:
    """Keep a callback that beat us recording its id (and forget its dedupe mark, so it
    applies once the id is recorded)."""
    yield Batch(
        Cmd("DEL", keys.dedupe("status", f"{channel_message_id}:{status}")),
        Cmd("RPUSH", keys.early_statuses(channel_message_id), update_json),
        Cmd("EXPIRE", keys.early_statuses(channel_message_id), EARLY_TTL_S),
    )


def dev_push(entry: dict[str, Any]) -> Op[None]:
    raw = json.dumps(entry, ensure_ascii=False)
    notice = json.dumps({"type": "dev_outbox", "session_id": "", "to": entry.get("to")})
    yield Batch(
        Cmd("LPUSH", keys.DEV_OUTBOX, raw),
        Cmd("LTRIM", keys.DEV_OUTBOX, 0, DEV_OUTBOX_KEEP - 1),
        Cmd("PUBLISH", keys.NOTIFY_LIVE, notice),
    )


def dev_outbox(limit: int = 50) -> Op[list[dict[str, Any]]]:
    raw = yield Cmd("LRANGE", keys.DEV_OUTBOX, 0, limit - 1)
    return [json.loads(r) for r in raw]
