"""Session operations: ingest, open, read, compare-and-set commit, listing, stats, turn slots."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_core.models import (
    Channel,
    Message,
    Session,
    SessionMetadata,
    SessionMode,
    SessionStatus,
    iso_from_ms,
)
from agent_core.store import keys
from agent_core.store.runner import Cmd, Lua, Op

DEDUPE_TTL_S = 48 * 3600
# Stands for the session id inside a prepared turn job's payload (same length as a UUID).
TURN_SESSION_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
LIST_MAX_SCAN = 5000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TurnJob:
    """An RQ job prepared so a Lua script can enqueue it (see workers/queues.py).

    A turn job's payload holds TURN_SESSION_PLACEHOLDER where the session id goes (the
    ingest script learns the session); other prepared jobs carry their real arguments.
    """

    id: str
    key: str
    queue_key: str
    fields: list[str]
    data: bytes
    lease_ms: int

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "queue_key": self.queue_key,
            "fields": self.fields,
            "lease_ms": self.lease_ms,
        }


def message_rest(msg: Mapping[str, Any]) -> str:
    """A message's JSON without its opening brace; the store splices in seq and session_id."""
    body = {k: v for k, v in msg.items() if v is not None and v != [] and v != {} and v is not False}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:]


def new_message(role: str, text: str, *, created_at: str, **extra: Any) -> dict[str, Any]:
    return {"id": "msg_" + uuid.uuid4().hex, "role": role, "text": text, "created_at": created_at, **extra}


def parse_message(raw: str) -> Message:
    return Message.model_validate_json(raw)


def _json_field(value: str | None, default: Any) -> Any:
    if not value:
        return default
    return json.loads(value)


def parse_session(h: Mapping[str, str]) -> Session | None:
    if not h or "id" not in h:
        return None

    def opt(name: str) -> str | None:
        return h.get(name) or None

    return Session(
        id=h["id"],
        chat_agent_id=int(h.get("chat_agent_id") or 0),
        account_id=int(h.get("account_id") or 1),
        customer_id=h["customer_id"],
        mode=SessionMode(h["mode"]),
        help_requested=h.get("help_requested") == "1",
        status=SessionStatus(h["status"]),
        current_state=h.get("current_state") or "default",
        metadata=SessionMetadata(
            input_fields=_json_field(h.get("input_fields"), {}),
            state_fields=_json_field(h.get("state_fields"), {}),
            context=_json_field(h.get("context"), []),
        ),
        active_human=opt("active_human"),
        created_at=h["created_at"],
        updated_at=h.get("updated_at") or h["created_at"],
        agent_id=h["agent_id"],
        channel=Channel(h["channel"]),
        customer_address=opt("customer_address"),
        last_customer_message_at=opt("last_customer_message_at"),
        last_activity_at=opt("last_activity_at"),
        help_requested_at=opt("help_requested_at"),
        help_reason=opt("help_reason"),
        summary=opt("summary"),
        closed_reason=opt("closed_reason"),
        opted_out=h.get("opted_out") == "1",
        delivery_error=_json_field(h.get("delivery_error"), None),
        agent_address=opt("agent_address"),
        messaging_service_sid=opt("messaging_service_sid"),
        version=int(h.get("version") or 0),
        seq=int(h.get("seq") or 0),
        last_cust_seq=int(h.get("last_cust_seq") or 0),
        answered_seq=int(h.get("answered_seq") or 0),
    )


def _flat(pairs: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in pairs.items():
        out.append(k)
        if isinstance(v, bool):
            out.append("1" if v else "0")
        elif v is None:
            out.append("")
        elif isinstance(v, dict | list):
            out.append(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
        else:
            out.append(str(v))
    return out


def new_session(
    *,
    customer_id: str,
    channel: Channel,
    customer_address: str | None = None,
    input_fields: Mapping[str, Any] | None = None,
    context: Sequence[str] = (),
    agent_address: str | None = None,
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """What a store script needs to create a session (lib.lua `new_session` fills in the rest)."""
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "channel": channel.value,
        "customer_address": customer_address or "",
        "agent_address": agent_address or "",
        "messaging_service_sid": messaging_service_sid or "",
        "input_fields": json.dumps(dict(input_fields), ensure_ascii=False) if input_fields else "{}",
        "context": json.dumps(list(context), ensure_ascii=False) if context else "[]",
    }


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: str
    session_id: str | None = None
    seq: int | None = None
    created: bool = False
    eligible: bool = False
    dispatched: int = 0
    mode: str | None = None
    help_requested: bool = False
    state: str | None = None
    opted_out: bool = False
    agent_id: str | None = None
    duplicate_of: str | None = None


def ingest(
    *,
    customer_id: str,
    channel: Channel,
    message: Mapping[str, Any],
    job: TurnJob,
    agent_id: str = "",
    route: Sequence[str] = (),
    customer_address: str | None = None,
    session_id: str = "",
    kind: str = "message",
    dedupe: Sequence[str] = (),
    profile_name: str = "",
    input_fields: Mapping[str, Any] | None = None,
    agent_address: str | None = None,
    messaging_service_sid: str | None = None,
    at_ms: int | None = None,
) -> Op[IngestResult]:
    """Store a customer message (one Lua round trip); see lua/ingest.lua."""
    ms = at_ms if at_ms is not None else now_ms()
    fields_in = dict(input_fields or {})
    if profile_name and "name" not in fields_in:
        fields_in["name"] = profile_name
    new = new_session(
        customer_id=customer_id,
        channel=channel,
        customer_address=customer_address,
        input_fields=fields_in,
        agent_address=agent_address,
        messaging_service_sid=messaging_service_sid,
    )
    params = {
        "now_ms": ms,
        "now_iso": iso_from_ms(ms),
        "dedupe": list(dedupe),
        "dedupe_ttl": DEDUPE_TTL_S,
        "agent_id": agent_id,
        "route": list(route),
        "customer_id": customer_id,
        "session_id": session_id,
        "new_session": new,
        "kind": kind,
        "profile_name": profile_name,
        "job": job.params(),
    }
    reply = yield Lua("ingest", json.dumps(params, separators=(",", ":")), job.data, message_rest(message))
    status = reply[0]
    if status == "dup":
        sid_seq = reply[1]
        dup_sid, _, dup_seq = sid_seq.rpartition(":")
        return IngestResult("dup", session_id=dup_sid, seq=int(dup_seq), duplicate_of=sid_seq)
    if status != "ok":
        return IngestResult(status, agent_id=reply[1] or None)
    return IngestResult(
        "ok",
        session_id=reply[1],
        seq=int(reply[2]),
        created=reply[3] == 1,
        eligible=reply[4] == 1,
        dispatched=int(reply[5]),
        mode=reply[6],
        help_requested=reply[7] == "1",
        state=reply[8] or "default",
        opted_out=reply[9] == "1",
        agent_id=reply[10],
    )


@dataclass(frozen=True, slots=True)
class OpenResult:
    status: str
    session_id: str | None = None
    closed_session_id: str | None = None


def open_session(
    *,
    agent_id: str,
    customer_id: str,
    channel: Channel,
    input_fields: Mapping[str, Any] | None,
    context: Sequence[str],
    welcome: str | None,
    customer_address: str | None = None,
) -> Op[OpenResult]:
    ms = now_ms()
    at = iso_from_ms(ms)
    new = new_session(
        customer_id=customer_id,
        channel=channel,
        customer_address=customer_address,
        input_fields=input_fields,
        context=context,
    )
    welcome_rest = message_rest(new_message("agent", welcome, created_at=at, kind="welcome")) if welcome else ""
    params = {
        "agent_id": agent_id,
        "customer_id": customer_id,
        "now_ms": ms,
        "now_iso": at,
        "new_session": new,
        "welcome": welcome_rest,
    }
    reply = yield Lua("open_session", json.dumps(params, separators=(",", ":")))
    if reply[0] != "ok":
        return OpenResult(reply[0])
    return OpenResult("ok", session_id=reply[1], closed_session_id=reply[2] or None)


def get(sid: str) -> Op[Session | None]:
    raw = yield Cmd("HGETALL", keys.session(sid))
    return parse_session(raw)


def get_many(sids: Iterable[str]) -> Op[list[Session]]:
    from agent_core.store.runner import Batch

    ids = list(sids)
    if not ids:
        return []
    raws = yield Batch(*(Cmd("HGETALL", keys.session(s)) for s in ids))
    return [s for s in (parse_session(r) for r in raws) if s is not None]


def answered_seq(sid: str) -> Op[int]:
    value = yield Cmd("HGET", keys.session(sid), "answered_seq")
    return int(value or 0)


def open_session_id(agent_id: str, customer_id: str) -> Op[str | None]:
    sid = yield Cmd("HGET", keys.open_sessions(agent_id), customer_id)
    return sid  # type: ignore[no-any-return]


def open_sessions_of(customer_id: str, agent_ids: Iterable[str]) -> Op[dict[str, str]]:
    from agent_core.store.runner import Batch

    ids = list(agent_ids)
    if not ids:
        return {}
    sids = yield Batch(*(Cmd("HGET", keys.open_sessions(a), customer_id) for a in ids))
    return {a: s for a, s in zip(ids, sids, strict=True) if s}


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: str
    version: int = 0
    dispatched: int = 0
    seqs: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def commit(
    sid: str,
    *,
    expect_version: int = -1,
    require_open: bool = False,
    set: Mapping[str, Any] | None = None,
    touch: bool = False,
    messages: Sequence[Mapping[str, Any]] = (),
    answer: bool = False,
    zadd: Sequence[tuple[str, float, str]] = (),
    zrem: Sequence[tuple[str, str]] = (),
    rpush: Sequence[tuple[str, str, int | None]] = (),
    setex: Sequence[tuple[str, str, int]] = (),
    job: TurnJob | None = None,
    jobs: Sequence[TurnJob] = (),
    at_ms: int | None = None,
) -> Op[CommitResult]:
    """Atomic session write; `conflict` if the session moved past `expect_version`."""
    ms = at_ms if at_ms is not None else now_ms()
    params = {
        "sid": sid,
        "now_ms": ms,
        "now_iso": iso_from_ms(ms),
        "expect_version": expect_version,
        "require_open": require_open,
        "set": _flat(set or {}),
        "touch": touch,
        "messages": [message_rest(m) for m in messages],
        "answer": answer,
        "zadd": [list(z) for z in zadd],
        "zrem": [list(z) for z in zrem],
        "rpush": [[k, v, n] if n else [k, v] for k, v, n in rpush],
        "setex": [list(s) for s in setex],
        "job": job.params() if job else None,
        "jobs": [j.params() for j in jobs],
    }
    reply = yield Lua(
        "commit",
        json.dumps(params, ensure_ascii=False, separators=(",", ":")),
        job.data if job else b"",
        *(j.data for j in jobs),
    )
    status = reply[0]
    if status == "ok":
        return CommitResult("ok", int(reply[1]), int(reply[2]), [int(x) for x in reply[3:]])
    if status == "conflict":
        return CommitResult("conflict", int(reply[1]))
    return CommitResult(status)


@dataclass(frozen=True, slots=True)
class SessionFilter:
    agent_id: str | None = None
    status: str | None = None
    mode: str | None = None
    customer_id: str | None = None
    help_requested: bool | None = None
    channel: str | None = None
    q: str | None = None

    def field_values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.status:
            out["status"] = self.status
        if self.mode:
            out["mode"] = self.mode
        if self.help_requested is not None:
            out["help_requested"] = "1" if self.help_requested else "0"
        if self.channel:
            out["channel"] = self.channel
        if self.customer_id:
            out["customer_id"] = self.customer_id
        return out

    def index_names(self) -> dict[str, str]:
        """Index name per given filter (session hash field -> `name:value`, as lib.lua ix_keys)."""
        return {f: f"{_INDEX_NAME[f]}:{v}" for f, v in self.field_values().items()}


_INDEX_NAME = {
    "status": "status",
    "mode": "mode",
    "help_requested": "help",
    "channel": "channel",
    "customer_id": "cust",
}


def encode_cursor(score: str, sid: str) -> str:
    return base64.urlsafe_b64encode(f"{score}|{sid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises ValueError on a cursor we did not issue."""
    padded = cursor + "=" * (-len(cursor) % 4)
    score, sep, sid = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    if not sep:
        raise ValueError("malformed cursor")
    float(score)
    return score, sid


def list_page(flt: SessionFilter, *, limit: int, cursor: str | None) -> Op[tuple[list[Session], str | None]]:
    """Newest activity first; walks the smallest matching index and checks the other filters."""
    from agent_core.store.runner import Batch

    scope = flt.agent_id or "*"
    names = flt.index_names()
    candidates = [keys.index(scope, "all")] + [keys.index(scope, n) for n in names.values()]
    sizes = yield Batch(*(Cmd("ZCARD", k) for k in candidates))
    index = min(zip(sizes, candidates, strict=True))[1]
    cursor_score, cursor_sid = decode_cursor(cursor) if cursor else ("", "")
    params = {
        "index": index,
        "filters": {k: v for k, v in flt.field_values().items() if keys.index(scope, names[k]) != index},
        "q": (flt.q or "").lower(),
        "cursor_score": cursor_score,
        "cursor_sid": cursor_sid,
        "limit": limit,
        "max_scan": LIST_MAX_SCAN,
    }
    if not params["filters"]:
        params["filters"] = {}
    reply = yield Lua("list_sessions", json.dumps(params))
    next_score, next_sid, count = reply[0], reply[1], int(reply[2])
    sessions = []
    for flat in reply[3 : 3 + count]:
        parsed = parse_session(dict(zip(flat[::2], flat[1::2], strict=True)))
        if parsed is not None:
            sessions.append(parsed)
    return sessions, (encode_cursor(next_score, next_sid) if next_score else None)


STAT_FIELDS = ("total", "active", "dormant", "closed", "help_requested", "support")


def stats(agent_id: str | None) -> Op[dict[str, int]]:
    raw = yield Cmd("HGETALL", keys.stats(agent_id or "*"))
    return {f: int(raw.get(f, 0)) for f in STAT_FIELDS}


def acquire_turn(sid: str, token: str, ttl_ms: int) -> Op[bool]:
    ok = yield Lua("turn_lock", sid, token, ttl_ms, now_ms(), "acquire")
    return bool(ok == 1)


def renew_turn(sid: str, token: str, ttl_ms: int) -> Op[bool]:
    ok = yield Lua("turn_lock", sid, token, ttl_ms, now_ms(), "renew")
    return bool(ok == 1)


def release_turn(sid: str, token: str) -> Op[None]:
    yield Lua("turn_unlock", sid, token)


def finish_turn(sid: str, token: str) -> Op[int | None]:
    """None when another message needs answering; else slot and lock are released and every
    customer message up to the returned seq is settled."""
    reply = yield Lua("finish_turn", sid, token)
    return int(reply[1]) if reply[0] == "done" else None


def expired_turns(limit: int = 500) -> Op[list[str]]:
    sids = yield Cmd("ZRANGEBYSCORE", keys.TURNS_PENDING, "-inf", now_ms(), "LIMIT", 0, limit)
    return list(sids)


def redispatch(sid: str, job: TurnJob) -> Op[bool]:
    params = {"sid": sid, "now_ms": now_ms(), "job": job.params()}
    reply = yield Lua("redispatch", json.dumps(params), job.data)
    return bool(reply == 1)
