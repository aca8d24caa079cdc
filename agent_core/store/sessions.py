"""Session operations: ingest, open, read, compare-and-set writes, listing, stats, turn slots.

Writes speak the domain: field changes, messages, a whisper and the follow-up `Work` they
make necessary (store/work.py); the scripts keep indexes, counters, events and jobs in step.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent_core.models import (
    Channel,
    ChannelUse,
    Message,
    MessageKind,
    Role,
    Session,
    SessionMetadata,
    SessionMode,
    SessionStatus,
    iso_from_ms,
    now_ms,
    uuid4_hex,
    uuid4_str,
)
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Lua, Op
from agent_core.store.work import Work

DEDUPE_TTL_S = 48 * 3600
LIST_MAX_SCAN = 5000
WHISPERS_KEEP = 50
CAS_ATTEMPTS = 20


def message_rest(msg: Mapping[str, Any]) -> str:
    """A message's JSON without its opening brace; the store splices in seq and session_id."""
    body = {k: v for k, v in msg.items() if v is not None and v != [] and v != {} and v is not False}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:]


def new_message(role: Role, text: str, *, created_at: str, **extra: Any) -> dict[str, Any]:
    """A message to store (the store assigns seq and session_id)."""
    return {"id": "msg_" + uuid4_hex(), "role": role.value, "text": text, "created_at": created_at, **extra}


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
        live_call=opt("live_call"),
        channel_use={
            c: ChannelUse(
                opted_out=h.get(f"opted_out:{c.value}") == "1",
                last_customer_message_at=h.get(f"last_customer_at:{c.value}") or None,
            )
            for c in Channel
            if f"last_customer_at:{c.value}" in h or f"opted_out:{c.value}" in h
        },
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
        "id": uuid4_str(),
        "customer_id": customer_id,
        "channel": channel.value,
        "customer_address": customer_address or "",
        "agent_address": agent_address or "",
        "messaging_service_sid": messaging_service_sid or "",
        "input_fields": json.dumps(dict(input_fields), ensure_ascii=False) if input_fields else "{}",
        "context": json.dumps(list(context), ensure_ascii=False) if context else "[]",
    }


class IngestStatus(StrEnum):
    ok = "ok"
    dup = "dup"
    no_agent = "no_agent"
    archived = "archived"
    no_session = "no_session"
    session_mismatch = "session_mismatch"


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: IngestStatus
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


def _pairs(reply: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(reply[::2], reply[1::2], strict=True))


def ingest(
    *,
    customer_id: str,
    channel: Channel,
    message: Mapping[str, Any],
    agent_id: str = "",
    route: Sequence[str] = (),
    customer_address: str | None = None,
    session_id: str = "",
    kind: str = "message",
    dedupe: Sequence[tuple[str, str]] = (),
    profile_name: str = "",
    input_fields: Mapping[str, Any] | None = None,
    agent_address: str | None = None,
    messaging_service_sid: str | None = None,
    at_ms: int | None = None,
) -> Op[IngestResult]:
    """Store a customer message and queue the session's turn (one Lua round trip; see
    lua/ingest.lua). `dedupe` are (namespace, value) pairs: a repeat of any is `dup`."""
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
        "dedupe": [keys.dedupe(ns, value) for ns, value in dedupe],
        "dedupe_ttl": DEDUPE_TTL_S,
        "agent_id": agent_id,
        "route": list(route),
        "customer_id": customer_id,
        "session_id": session_id,
        "new_session": new,
        "kind": kind,
        "profile_name": profile_name,
    }
    reply = _pairs(
        (yield Lua("ingest", json.dumps(params, separators=(",", ":")), message_rest(message), work=[Work.turn()]))
    )
    status = IngestStatus(reply["status"])
    if status is IngestStatus.dup:
        dup_sid, _, dup_seq = reply["duplicate_of"].rpartition(":")
        return IngestResult(status, session_id=dup_sid, seq=int(dup_seq))
    if status is not IngestStatus.ok:
        return IngestResult(status, agent_id=reply.get("agent_id") or None)
    return IngestResult(
        status,
        session_id=reply["session_id"],
        seq=int(reply["seq"]),
        created=reply["created"] == 1,
        eligible=reply["eligible"] == 1,
        dispatched=int(reply["dispatched"]),
        mode=reply["mode"],
        help_requested=reply["help_requested"] == "1",
        state=reply["state"] or "default",
        opted_out=reply["opted_out"] == "1",
        agent_id=reply["agent_id"],
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
    welcome_rest = (
        message_rest(new_message(Role.agent, welcome, created_at=at, kind=MessageKind.welcome)) if welcome else ""
    )
    params = {
        "agent_id": agent_id,
        "customer_id": customer_id,
        "now_ms": ms,
        "now_iso": at,
        "new_session": new,
        "welcome": welcome_rest,
        "close": _flat(closing("replaced", at)),
    }
    # The summary of the session this replaces (if any: the script finds it).
    reply = yield Lua("open_session", json.dumps(params, separators=(",", ":")), work=[Work.summary()])
    if reply[0] != "ok":
        return OpenResult(reply[0])
    return OpenResult("ok", session_id=reply[1], closed_session_id=reply[2] or None)


def closing(reason: str, at: str) -> dict[str, Any]:
    """The field changes that close a session (by an operator, the agent, inactivity, a new
    session for the same customer): it leaves support mode and its help request."""
    return {
        "status": SessionStatus.closed.value,
        "closed_reason": reason,
        "closed_at": at,
        "help_requested": False,
        "mode": SessionMode.ai.value,
        "active_human": "",
    }


def get(sid: str) -> Op[Session | None]:
    raw = yield Cmd("HGETALL", keys.session(sid))
    return parse_session(raw)


def get_for_turn(sid: str) -> Op[tuple[Session | None, bool]]:
    """The session and whether the AI would answer it now (SPEC §4.2; the rule is the one
    the ingest script applies, lib.lua turn_state)."""
    flat = yield Lua("turn_view", sid)
    h = _pairs(flat)
    eligible = h.pop("_eligible", "0") == "1"
    return parse_session(h), eligible


def get_many(sids: Iterable[str]) -> Op[list[Session]]:
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
    ids = list(agent_ids)
    if not ids:
        return {}
    sids = yield Batch(*(Cmd("HGET", keys.open_sessions(a), customer_id) for a in ids))
    return {a: s for a, s in zip(ids, sids, strict=True) if s}


class WriteStatus(StrEnum):
    ok = "ok"
    conflict = "conflict"
    missing = "missing"
    closed = "closed"


@dataclass(frozen=True, slots=True)
class Change:
    """One atomic write to a session: field changes, messages appended in order, an operator
    whisper, and the follow-up work (queued with it). `touch` counts it as activity;
    `answer` settles every customer message so far; `require_open` refuses a closed session."""

    set: Mapping[str, Any] = field(default_factory=dict)
    messages: Sequence[Mapping[str, Any]] = ()
    whisper: Mapping[str, Any] | None = None
    work: Sequence[Work] = ()
    touch: bool = False
    answer: bool = False
    require_open: bool = False


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: WriteStatus
    version: int = 0
    dispatched: int = 0
    seqs: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is WriteStatus.ok


def commit(sid: str, change: Change, *, expect_version: int = -1) -> Op[CommitResult]:
    """Apply `change` atomically; `conflict` if the session moved past `expect_version`."""
    ms = now_ms()
    params = {
        "sid": sid,
        "now_ms": ms,
        "now_iso": iso_from_ms(ms),
        "expect_version": expect_version,
        "require_open": change.require_open,
        "set": _flat(change.set),
        "touch": change.touch,
        "messages": [message_rest(m) for m in change.messages],
        "answer": change.answer,
        "whisper": json.dumps(change.whisper, ensure_ascii=False) if change.whisper else "",
        "whispers_keep": WHISPERS_KEEP,
    }
    reply = yield Lua("commit", json.dumps(params, ensure_ascii=False, separators=(",", ":")), work=change.work)
    status = WriteStatus(reply[0])
    if status is WriteStatus.ok:
        return CommitResult(status, int(reply[1]), int(reply[2]), [int(x) for x in reply[3:]])
    if status is WriteStatus.conflict:
        return CommitResult(status, int(reply[1]))
    return CommitResult(status)


class Contention(Exception):
    """The session kept changing under a compare-and-set write; the caller may retry later."""


@dataclass(frozen=True, slots=True)
class Updated:
    """What `update` did: `session` is the state the change was planned from."""

    status: WriteStatus
    session: Session | None = None
    result: CommitResult | None = None


def update(sid: str, plan: Callable[[Session], Change | None]) -> Op[Updated]:
    """Read the session, plan a change from it, write it if nothing moved in between; repeat
    on a conflict. `plan` returns None to write nothing, or raises to refuse."""
    for _ in range(CAS_ATTEMPTS):
        session = yield from get(sid)
        if session is None:
            return Updated(WriteStatus.missing)
        change = plan(session)
        if change is None:
            return Updated(WriteStatus.ok, session)
        res = yield from commit(sid, change, expect_version=session.version)
        if res.status is not WriteStatus.conflict:
            return Updated(res.status, session, res)
    raise Contention(f"session {sid} kept changing")


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

    def matches(self, session: Session) -> bool:
        """Whether `list_page` with this filter would list `session` (lua/list_sessions.lua's
        test, for a session a live notice names)."""
        if self.agent_id and session.agent_id != self.agent_id:
            return False
        have = {
            "status": session.status.value,
            "mode": session.mode.value,
            "help_requested": "1" if session.help_requested else "0",
            "channel": session.channel.value,
            "customer_id": session.customer_id,
        }
        if any(have[f] != v for f, v in self.field_values().items()):
            return False
        q = (self.q or "").lower()
        return not q or q in session.customer_id.lower() or session.id == q

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


# A score as Redis writes it. Redis reads the cursor's score back as a range bound and refuses
# what Python's float() also takes ('nan', '1_0', ' 1'), which was a 500.
CURSOR_SCORE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?")


def encode_cursor(score: str, sid: str) -> str:
    return base64.urlsafe_b64encode(f"{score}|{sid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises ValueError on a cursor we did not issue."""
    padded = cursor + "=" * (-len(cursor) % 4)
    score, sep, sid = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    if not sep or not CURSOR_SCORE.fullmatch(score):
        raise ValueError("malformed cursor")
    return score, sid


def list_page(flt: SessionFilter, *, limit: int, cursor: str | None) -> Op[tuple[list[Session], str | None]]:
    """Newest activity first; walks the smallest matching index and checks the other filters."""
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


def redispatch(sid: str) -> Op[bool]:
    """Queue the turn again if its lease ran out and it is still needed (the watchdog)."""
    reply = yield Lua("redispatch", sid, now_ms(), work=[Work.turn()])
    return bool(reply == 1)


SWEEP_BATCH = 500


def idle_since(agent_id: str, status: SessionStatus, before_ms: float) -> Op[list[str]]:
    """Up to SWEEP_BATCH of the agent's sessions in `status` with no activity since `before_ms`
    (read from the status index, which is scored by last activity)."""
    sids = yield Cmd(
        "ZRANGEBYSCORE", keys.index(agent_id, f"status:{status.value}"), "-inf", int(before_ms), "LIMIT", 0, SWEEP_BATCH
    )
    return list(sids)
