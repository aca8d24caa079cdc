"""Escalation calls in Redis (SPEC §8): the check-and-set that starts one, the writes that
move it on (lua/call_write.lua), reads and the newest-first listing.

A call is a hash (its fields as strings), a transcript list (JSON entries, appended as the
call goes), a CallSid → id mapping for status callbacks, and three listing indexes (all,
per agent, per session) scored by a global sequence, which is also the listing cursor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_core.models import iso_from_ms, now_ms
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Lua, Op
from agent_core.store.sessions import _flat, message_rest
from agent_core.store.work import Work

# Status callbacks of one call come within its time limit (≤ 4 h): dedupe keys outlive it.
DEDUPE_TTL_S = 48 * 3600
SID_MAP_TTL_S = 7 * 24 * 3600
REPLY_TTL_S = 120
LIST_MAX_SCAN = 2000


@dataclass(frozen=True, slots=True)
class Requested:
    """What the check-and-set did: `ok` (the call is stored, its job queued), or why not:
    `missing`, `closed`, `opted_out`, `live` (then `live_call` is the live one)."""

    status: str
    live_call: str | None = None


def request(sid: str, call_id: str, fields: Mapping[str, Any], work: Sequence[Work]) -> Op[Requested]:
    ms = now_ms()
    params = {"sid": sid, "call_id": call_id, "fields": _flat(fields), "now_iso": iso_from_ms(ms), "now_ms": ms}
    reply = yield Lua("call_request", json.dumps(params, ensure_ascii=False), work=work)
    if reply[0] == "live":
        return Requested("live", reply[1])
    return Requested(reply[0])


@dataclass(frozen=True, slots=True)
class CallWrite:
    """One change to a call (see lua/call_write.lua). `rank` (≥ 0) refuses a change that does
    not move the status forward; `once` names a flag the write sets and refuses if set;
    `dedupe` is a (CallSid, CallStatus) pair seen once."""

    set: Mapping[str, Any] = field(default_factory=dict)
    set_missing: Mapping[str, Any] = field(default_factory=dict)
    transcript: Sequence[Mapping[str, Any]] = ()
    rank: int = -1
    once: str = ""
    dedupe: tuple[str, str] | None = None
    map_sid: str = ""
    clear_live: bool = False
    messages: Sequence[Mapping[str, Any]] = ()
    context: str = ""
    context_keep: int = 5
    memory: tuple[str, str, Mapping[str, Any]] | None = None
    memory_keep: int = 100
    event: tuple[str, Mapping[str, Any]] | None = None
    work: Sequence[Work] = ()


@dataclass(frozen=True, slots=True)
class Written:
    """`ok`, `missing`, `dup`, `stale` or `flagged`; `status` is the call's status after it;
    `appended` whether the chat messages were written (the session was open)."""

    outcome: str
    status: str = ""
    appended: bool = False


def write(call_id: str, change: CallWrite) -> Op[Written]:
    ms = now_ms()
    memory_key, memory_entry = "", ""
    if change.memory is not None:
        agent_id, customer_id, entry = change.memory
        memory_key, memory_entry = keys.memory(agent_id, customer_id), json.dumps(entry, ensure_ascii=False)
    params = {
        "call_id": call_id,
        "now_iso": iso_from_ms(ms),
        "now_ms": ms,
        "dedupe": keys.dedupe("callstatus", ":".join(change.dedupe)) if change.dedupe else "",
        "dedupe_ttl": DEDUPE_TTL_S,
        "rank": change.rank,
        "once": change.once,
        "set": _flat(change.set),
        "set_missing": _flat(change.set_missing),
        "transcript": [json.dumps(t, ensure_ascii=False) for t in change.transcript],
        "map_sid": change.map_sid,
        "map_ttl": SID_MAP_TTL_S,
        "clear_live": change.clear_live,
        "messages": [message_rest(m) for m in change.messages],
        "context": change.context,
        "context_keep": change.context_keep,
        "memory_key": memory_key,
        "memory_entry": memory_entry,
        "memory_keep": change.memory_keep,
        "event_type": change.event[0] if change.event else "",
        "event_data": json.dumps(change.event[1], ensure_ascii=False) if change.event else "",
    }
    reply = yield Lua("call_write", json.dumps(params, ensure_ascii=False), work=change.work)
    if reply[0] == "ok":
        return Written("ok", reply[1], reply[2] == "1")
    if reply[0] == "missing":
        return Written("missing")
    return Written(reply[0], reply[1])


@dataclass(frozen=True, slots=True)
class StoredCall:
    fields: dict[str, str]
    transcript: list[dict[str, Any]]


def get(call_id: str) -> Op[StoredCall | None]:
    fields, transcript = yield Batch(
        Cmd("HGETALL", keys.call(call_id)), Cmd("LRANGE", keys.call_transcript(call_id), 0, -1)
    )
    if not fields or "id" not in fields:
        return None
    return StoredCall(dict(fields), [json.loads(t) for t in transcript])


def get_many(call_ids: Sequence[str]) -> Op[list[StoredCall]]:
    if not call_ids:
        return []
    replies = yield Batch(
        *(
            c
            for cid in call_ids
            for c in (Cmd("HGETALL", keys.call(cid)), Cmd("LRANGE", keys.call_transcript(cid), 0, -1))
        )
    )
    out = []
    for fields, transcript in zip(replies[::2], replies[1::2], strict=True):
        if fields and "id" in fields:
            out.append(StoredCall(dict(fields), [json.loads(t) for t in transcript]))
    return out


def field_of(call_id: str, name: str) -> Op[str | None]:
    value = yield Cmd("HGET", keys.call(call_id), name)
    return value  # type: ignore[no-any-return]


def by_call_sid(call_sid: str) -> Op[str | None]:
    value = yield Cmd("GET", keys.call_by_sid(call_sid))
    return value  # type: ignore[no-any-return]


def count_silence(call_id: str, silent: bool) -> Op[int]:
    """Silent turns in a row (a write setting `silences` to 0 resets it when the caller speaks)."""
    if not silent:
        yield Cmd("HSET", keys.call(call_id), "silences", 0)
        return 0
    n = yield Cmd("HINCRBY", keys.call(call_id), "silences", 1)
    return int(n)


def put_reply(call_id: str, turn: str, reply: Mapping[str, Any]) -> Op[None]:
    yield Cmd("SET", keys.call_reply(call_id, turn), json.dumps(reply, ensure_ascii=False), "EX", REPLY_TTL_S)


def take_reply(call_id: str, turn: str) -> Op[dict[str, Any] | None]:
    raw = yield Cmd("GETDEL", keys.call_reply(call_id, turn))
    return json.loads(raw) if raw else None


def page(
    *, session_id: str | None, agent_id: str | None, status: str | None, limit: int, before: int | None
) -> Op[tuple[list[StoredCall], int | None]]:
    """Newest first from the narrowest index; `before` is the previous page's cursor (a
    sequence number: the page holds calls below it). A status filter is checked per call."""
    scope = f"session:{session_id}" if session_id else f"agent:{agent_id}" if agent_id else "all"
    key = keys.call_index(scope)
    top = f"({before}" if before is not None else "+inf"
    found: list[StoredCall] = []
    scanned = 0
    cursor: int | None = None
    while len(found) < limit and scanned < LIST_MAX_SCAN:
        # The scores are the calls' `seq` field (read with them): no WITHSCORES reply shapes.
        ids = yield Cmd("ZREVRANGEBYSCORE", key, top, "-inf", "LIMIT", 0, limit)
        if not ids:
            return found, None
        calls = yield from get_many(ids)
        by_id = {c.fields["id"]: c for c in calls}
        last = int(by_id[ids[-1]].fields.get("seq") or 0) if ids[-1] in by_id else None
        for cid in ids:
            scanned += 1
            c = by_id.get(cid)
            if c is None or (agent_id and c.fields.get("agent_id") != agent_id):
                continue
            score = int(c.fields.get("seq") or 0)
            if status and c.fields.get("status") != status:
                continue
            found.append(c)
            cursor = score
            if len(found) == limit:
                return found, cursor
        if len(ids) < limit or last is None:
            return found, None
        top = f"({last}"
    return found, cursor


def truncate_last(call_id: str, entry: Mapping[str, Any]) -> Op[None]:
    """Replace the transcript's last entry (a reply the caller heard only part of)."""
    yield Cmd("LSET", keys.call_transcript(call_id), -1, json.dumps(entry, ensure_ascii=False))


def remove_of_session(sid: str) -> Op[int]:
    """Erase a session's calls: hashes, transcripts, CallSid mappings and index entries."""
    ids = yield Cmd("ZRANGE", keys.call_index(f"session:{sid}"), 0, -1)
    if not ids:
        return 0
    rows = yield Batch(*(Cmd("HMGET", keys.call(cid), "agent_id", "twilio_call_sid") for cid in ids))
    cmds: list[Cmd] = []
    for cid, (agent_id, call_sid) in zip(ids, rows, strict=True):
        cmds += [
            Cmd("DEL", keys.call(cid), keys.call_transcript(cid)),
            Cmd("ZREM", keys.call_index("all"), cid),
            Cmd("ZREM", keys.call_index(f"agent:{agent_id}"), cid),
        ]
        if call_sid:
            cmds.append(Cmd("DEL", keys.call_by_sid(call_sid)))
    cmds.append(Cmd("DEL", keys.call_index(f"session:{sid}")))
    yield Batch(*cmds)
    return len(ids)
