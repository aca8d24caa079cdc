"""Message reads (thread, pages) and in-place updates of a stored message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent_core.models import Message
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Lua, Op
from agent_core.store.sessions import parse_message

PAGE_CHUNK = 200
CAS_ATTEMPTS = 20


def recent(sid: str, upto_seq: int, count: int) -> Op[list[Message]]:
    """The last `count` messages up to `upto_seq`, in seq order."""
    start = max(1, upto_seq - count + 1)
    seqs = list(range(start, upto_seq + 1))
    if not seqs:
        return []
    raws = yield Cmd("HMGET", keys.messages(sid), *seqs)
    return [parse_message(r) for r in raws if r]


def thread_and_whispers(sid: str, upto_seq: int, count: int) -> Op[tuple[list[Message], list[str]]]:
    """What a turn reads, in one round trip: the last `count` messages and the whispers."""
    start = max(1, upto_seq - count + 1)
    raws, whisper_raws = yield Batch(
        Cmd("HMGET", keys.messages(sid), *range(start, upto_seq + 1)) if upto_seq else Cmd("ECHO", ""),
        Cmd("LRANGE", keys.whispers(sid), 0, -1),
    )
    thread = [parse_message(r) for r in (raws if upto_seq else []) if r]
    return thread, [json.loads(r)["text"] for r in whisper_raws]


def last_public_many(threads: list[tuple[str, int]], window: int = 8) -> Op[dict[str, Message | None]]:
    """Per (session id, last seq): the newest public message among its last `window`, in one
    round trip (the console's list previews)."""
    wanted = [(sid, upto) for sid, upto in threads if upto > 0]
    if not wanted:
        return {sid: None for sid, _ in threads}
    replies = yield Batch(
        *(Cmd("HMGET", keys.messages(sid), *range(upto, max(0, upto - window), -1)) for sid, upto in wanted)
    )
    out: dict[str, Message | None] = {sid: None for sid, _ in threads}
    for (sid, _), raws in zip(wanted, replies, strict=True):
        for raw in raws:
            if raw:
                msg = parse_message(raw)
                if msg.public:
                    out[sid] = msg
                    break
    return out


def find(sid: str, upto_seq: int, message_id: str, window: int = 500) -> Op[Message | None]:
    """The message with this id among the last `window` of the thread."""
    recent_ = yield from recent(sid, upto_seq, window)
    return next((m for m in reversed(recent_) if m.id == message_id), None)


def get(sid: str, seq: int) -> Op[Message | None]:
    raw = yield Cmd("HGET", keys.messages(sid), seq)
    return parse_message(raw) if raw else None


def page(
    sid: str, *, after_seq: int, limit: int, last_seq: int, include_private: bool
) -> Op[tuple[list[Message], int | None]]:
    """Messages after `after_seq` in seq order; returns (items, next after_seq or None)."""
    items: list[Message] = []
    cursor = after_seq
    while cursor < last_seq and len(items) < limit:
        seqs = list(range(cursor + 1, min(last_seq, cursor + PAGE_CHUNK) + 1))
        raws = yield Cmd("HMGET", keys.messages(sid), *seqs)
        for seq, raw in zip(seqs, raws, strict=True):
            cursor = seq
            if not raw:
                continue
            msg = parse_message(raw)
            if include_private or msg.public:
                items.append(msg)
                if len(items) >= limit:
                    break
    more = cursor < last_seq
    if more and not include_private:
        # Only promise a next page when a message that would be shown follows.
        rest = yield from page(sid, after_seq=cursor, limit=1, last_seq=last_seq, include_private=False)
        more = bool(rest[0])
    return items, (cursor if more else None)


def update(sid: str, seq: int, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Op[Message | None]:
    """Read-modify-write one message; `change` returns the new dict, or None to leave it."""
    for _ in range(CAS_ATTEMPTS):
        raw = yield Cmd("HGET", keys.messages(sid), seq)
        if not raw:
            return None
        new = change(json.loads(raw))
        if new is None:
            return parse_message(raw)
        new_raw = json.dumps(new, ensure_ascii=False, separators=(",", ":"))
        ok = yield Lua("msg_cas", sid, seq, raw, new_raw)
        if ok == 1:
            return parse_message(new_raw)
    raise RuntimeError(f"message {sid}:{seq} kept changing under us")
