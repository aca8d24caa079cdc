"""Chat v1 API (OSVI-compatible, SPEC §6.1) and its session extensions (§6.2)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from agent_core import inbound as customer
from agent_core.models import AgentStatus, Channel, Role, Session, SessionMode, SessionStatus, now_iso
from agent_core.store import (
    AsyncStore,
    Change,
    Contention,
    IngestResult,
    IngestStatus,
    WriteStatus,
    agents,
    messages,
    sessions,
)
from agent_core.store.sessions import SessionFilter
from agent_core.store.tokens import TokenRecord
from agent_core.support import run_command, send_template
from gateway.api import schemas
from gateway.api.calls import session_calls
from gateway.api.common import load_agent, load_session, session_json, store_of
from gateway.api.routing import Endpoint, Query, cursor_query
from gateway.auth import ANY, OPERATOR
from gateway.errors import Forbidden, NotFound, Unprocessable, envelope
from gateway.http import (
    customer_param,
    limit_param,
    page,
    parse_body,
    query_bool,
    query_enum,
    query_float,
    seq_position,
)
from gateway.notifier import Notifier


async def create_session(request: Request) -> Response:
    body = await parse_body(request, schemas.CreateSessionBody)
    store = store_of(request)
    agent = await load_agent(store, body.agent_uuid)
    if agent.status is AgentStatus.archived:
        raise Unprocessable(f"agent_uuid: agent '{agent.id}' is archived")
    result = await store.run(
        sessions.open_session(
            agent_id=agent.id,
            customer_id=body.customer_id,
            channel=Channel.api,
            input_fields=body.input_fields,
            context=schemas.clean_context(body.context),
            welcome=agent.welcome_message,
        )
    )
    if result.status != "ok" or result.session_id is None:
        raise Unprocessable(f"agent_uuid: agent '{agent.id}' cannot take new sessions ({result.status})")
    session = await store.run(sessions.get(result.session_id))
    return envelope(session_json(session))


async def active_session(request: Request) -> Response:
    customer_id = customer_param(request)
    if not customer_id.strip():
        raise Unprocessable("customer_id: query parameter is required")
    agent_id = request.query_params.get("agent_uuid")
    store = store_of(request)
    if agent_id:
        await load_agent(store, agent_id)
        sid = await store.run(sessions.open_session_id(agent_id, customer_id))
        session = await store.run(sessions.get(sid)) if sid else None
        if session is None:
            raise NotFound(f"no active session for customer '{customer_id}' with agent '{agent_id}'")
        return envelope(session_json(session))
    ids = await store.run(agents.all_ids())
    open_ids = await store.run(sessions.open_sessions_of(customer_id, ids))
    found = await store.run(sessions.get_many(open_ids.values()))
    return envelope({s.agent_id: session_json(s) for s in found})


def _inbound_result(session_id: str, notice: dict[str, Any], *, pending: bool = False) -> dict[str, Any]:
    out = {
        "session_id": session_id,
        "reply": notice.get("reply"),
        "state": notice.get("state") or "default",
        "mode": notice.get("mode") or SessionMode.ai.value,
        "help_requested": bool(notice.get("help_requested")),
    }
    if pending:
        out["pending"] = True
    return out


def _snapshot(session: Session, reply: str | None) -> dict[str, Any]:
    return {
        "reply": reply,
        "state": session.current_state,
        "mode": session.mode.value,
        "help_requested": session.help_requested,
    }


async def _stored_reply(store: AsyncStore, sid: str, seq: int) -> str | None:
    """The agent reply that answered customer message `seq`, if one is stored."""
    session = await store.run(sessions.get(sid))
    if session is None:
        return None
    items, _ = await store.run(
        messages.page(session.id, after_seq=seq, limit=50, last_seq=session.seq, include_private=False)
    )
    for msg in items:
        if msg.role is Role.agent and (msg.in_reply_to or 0) >= seq:
            return msg.text
    return None


def _refusal(result: IngestResult, body: schemas.InboundBody) -> Exception | None:
    """The API error for an inbound message the store did not take."""
    if result.status is IngestStatus.no_agent:
        return NotFound(f"agent_uuid: no agent with id '{body.agent_uuid}'")
    if result.status is IngestStatus.archived:
        return Unprocessable(f"agent_uuid: agent '{body.agent_uuid}' is archived")
    if result.status is IngestStatus.no_session:
        return NotFound(f"session_id: no session with id '{body.session_id}'")
    if result.status is IngestStatus.session_mismatch:
        return Unprocessable(f"session_id: session '{body.session_id}' belongs to another agent or customer")
    return None


async def inbound(request: Request) -> Response:
    body = await parse_body(request, schemas.InboundBody)
    settings = request.app.state.settings
    wait_s = query_float(request, "wait", settings.app.inbound_wait_s, minimum=0, maximum=60)
    token: TokenRecord = request.state.token
    store = store_of(request)
    idem = request.headers.get("idempotency-key", "").strip()
    result = await store.run(
        customer.receive(
            customer.CustomerMessage(
                channel=Channel.api,
                customer_id=body.customer_id,
                text=body.content,
                agent_id=body.agent_uuid,
                session_id=body.session_id or "",
                dedupe=(("api", f"{token.id}:{idem[:200]}"),) if idem else (),
            )
        )
    )
    refusal = _refusal(result, body)
    if refusal is not None:
        raise refusal
    assert result.session_id is not None and result.seq is not None
    sid, seq = result.session_id, result.seq
    structlog.contextvars.bind_contextvars(session_id=sid)
    state = {"reply": None, "state": result.state, "mode": result.mode, "help_requested": result.help_requested}
    if result.status is IngestStatus.dup:
        # A repeated Idempotency-Key: answer from the stored session (rare, so reads are fine).
        session, eligible = await store.run(sessions.get_for_turn(sid))
        if session is None:
            raise NotFound(f"session_id: no session with id '{sid}'")
        if session.answered_seq >= seq:
            reply = await _stored_reply(store, sid, seq)
            return envelope(_inbound_result(sid, _snapshot(session, reply)))
        if not eligible:
            return envelope(_inbound_result(sid, _snapshot(session, None)))
        state = _snapshot(session, None)
    elif not result.eligible:
        return envelope(_inbound_result(sid, state))
    if wait_s <= 0:
        return envelope(_inbound_result(sid, state, pending=True), status_code=202)
    notice = await _wait_for_reply(request, store, sid, seq, wait_s, state)
    if notice is None:
        return envelope(_inbound_result(sid, state, pending=True), status_code=202)
    return envelope(_inbound_result(sid, notice))


async def _wait_for_reply(
    request: Request, store: AsyncStore, sid: str, seq: int, wait_s: float, state: dict[str, Any]
) -> dict[str, Any] | None:
    """The turn's notice that answers customer message `seq` (reply filled in), or None when
    `wait_s` passes first. Waits on pub/sub, registered before a single look at the store."""
    notifier: Notifier = request.app.state.notifier
    waiter = notifier.waiter(sid, seq)
    try:
        # The reply may have been published before the waiter existed: look once, then wait.
        answered = await store.run(sessions.answered_seq(sid))
        if answered >= seq:
            session = await store.run(sessions.get(sid))
            reply = await _stored_reply(store, sid, seq)
            return _snapshot(session, reply) if session else {**state, "reply": reply}
        try:
            notice: dict[str, Any] = await asyncio.wait_for(asyncio.shield(waiter.future), timeout=wait_s)
        except TimeoutError:
            return None
        if notice.get("reply") is None and int(notice.get("answered_upto") or 0) >= seq:
            # Answered, but the reply's own notice was not seen (pub/sub is lossy).
            notice = {**notice, "reply": await _stored_reply(store, sid, seq)}
        return notice
    finally:
        notifier.forget(waiter)


async def inject_context(request: Request) -> Response:
    body = await parse_body(request, schemas.InjectContextBody)
    sid = request.path_params["session_id"]
    context: list[str] = []

    def plan(session: Session) -> Change:
        if session.status is SessionStatus.closed:
            raise Unprocessable(f"session_id: session '{session.id}' is closed")
        context[:] = schemas.clean_context([*session.metadata.context, body.context])
        note = sessions.new_message(Role.context, body.context, created_at=now_iso(), private=True)
        return Change(set={"context": context}, messages=[note], require_open=True)

    try:
        res = await store_of(request).run(sessions.update(sid, plan))
    except Contention:
        raise Unprocessable("session_id: the session is changing too quickly; retry") from None
    if res.status is WriteStatus.missing:
        raise NotFound(f"session_id: no session with id '{sid}'")
    if res.status is WriteStatus.closed:
        raise Unprocessable(f"session_id: session '{sid}' is closed")
    return envelope({"session_id": sid, "context": context})


async def support(request: Request) -> Response:
    body = await parse_body(request, schemas.SupportBody)
    store = store_of(request)
    session = await load_session(request)
    agent = await load_agent(store, session.agent_id)
    token: TokenRecord = request.state.token
    result = await store.run(
        run_command(
            session_id=session.id,
            agent=agent,
            operator=token.name,
            command=body.command,
            message=body.message,
        )
    )
    return envelope(result.data)


async def template(request: Request) -> Response:
    body = await parse_body(request, schemas.TemplateBody)
    session = await load_session(request)
    token: TokenRecord = request.state.token
    data = await store_of(request).run(
        send_template(
            session_id=session.id,
            operator=token.name,
            content_sid=body.content_sid,
            content_variables=body.content_variables,
        )
    )
    return envelope(data)


async def get_session(request: Request) -> Response:
    session = await load_session(request)
    return envelope({**session_json(session), "calls": await session_calls(request, session.id)})


async def list_messages(request: Request) -> Response:
    session = await load_session(request)
    include_private = bool(query_bool(request, "include_private"))
    token: TokenRecord = request.state.token
    if include_private and token.role not in OPERATOR:
        raise Forbidden("include_private: needs an operator or admin token")
    after = seq_position(request)
    items, next_after = await store_of(request).run(
        messages.page(
            session.id,
            after_seq=after,
            limit=limit_param(request),
            last_seq=session.seq,
            include_private=include_private,
        )
    )
    out = [m.model_dump(mode="json") for m in items]
    return envelope(page(out, str(next_after) if next_after is not None else None))


async def list_sessions(request: Request) -> Response:
    store = store_of(request)
    agent_id = request.query_params.get("agent_uuid") or None
    if agent_id:
        await load_agent(store, agent_id)
    flt = SessionFilter(
        agent_id=agent_id,
        status=query_enum(request, "status", tuple(s.value for s in SessionStatus)),
        mode=query_enum(request, "mode", tuple(m.value for m in SessionMode)),
        customer_id=customer_param(request) or None,
        help_requested=query_bool(request, "help_requested"),
        channel=query_enum(request, "channel", tuple(c.value for c in Channel)),
        q=(request.query_params.get("q") or "").strip() or None,
    )
    limit = limit_param(request)
    try:
        items, cursor = await store.run(
            sessions.list_page(flt, limit=limit, cursor=request.query_params.get("cursor") or None)
        )
    except ValueError:
        raise Unprocessable("cursor: not a cursor this API issued") from None
    return envelope(page([session_json(s) for s in items], cursor))


async def stats(request: Request) -> Response:
    store = store_of(request)
    agent_id = request.query_params.get("agent_uuid") or None
    if agent_id:
        await load_agent(store, agent_id)
    return envelope(await store.run(sessions.stats(agent_id)))


SESSION_FILTERS = (
    Query("agent_uuid", "Only this agent's sessions"),
    Query("status", "active | dormant | closed", {"type": "string", "enum": ["active", "dormant", "closed"]}),
    Query("mode", "ai | support", {"type": "string", "enum": ["ai", "support"]}),
    Query("customer_id", "Only this customer's sessions"),
    Query("help_requested", "true | false", {"type": "boolean"}),
    Query("channel", " | ".join(Channel), {"type": "string", "enum": [c.value for c in Channel]}),
    Query("q", "Text search in customer ids (or an exact session id)"),
    Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
    cursor_query("base64url of the last session's activity and id", {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}),
)

ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/chat/inbound",
        inbound,
        "Send a customer message and wait for the agent's reply",
        ANY,
        "chat",
        body=schemas.InboundBody,
        response=schemas.InboundResult,
        query=(
            Query(
                "wait",
                "Seconds to wait for the reply (0 = do not wait; default 25)",
                {"type": "number", "minimum": 0, "maximum": 60},
            ),
        ),
        headers=("Idempotency-Key",),
    ),
    Endpoint(
        "POST",
        "/v1/chat/session",
        create_session,
        "Start a session (closes the customer's open one)",
        ANY,
        "chat",
        body=schemas.CreateSessionBody,
        response=schemas.SessionDetail,
    ),
    Endpoint(
        "GET",
        "/v1/chat/session/active",
        active_session,
        "The customer's active (or dormant) session",
        ANY,
        "chat",
        response={"type": "object"},
        query=(
            Query("customer_id", "Customer id (not blank)", {"type": "string", "pattern": r"\S"}, required=True),
            Query("agent_uuid", "Agent id"),
        ),
    ),
    Endpoint(
        "POST",
        "/v1/chat/session/{session_id}/inject_context",
        inject_context,
        "Add an entry to the session's context bucket",
        ANY,
        "chat",
        body=schemas.InjectContextBody,
        response=schemas.ContextResult,
    ),
    Endpoint(
        "POST",
        "/v1/chat/session/{session_id}/support",
        support,
        "Operator command: takeover, tell, whisper, end, close, resolve, or a plain message",
        ANY,
        "chat",
        body=schemas.SupportBody,
        response=schemas.SupportResult,
    ),
    Endpoint(
        "POST",
        "/v1/chat/session/{session_id}/template",
        template,
        "Send an approved WhatsApp/SMS Content API template (works outside the 24-hour window)",
        ANY,
        "chat",
        body=schemas.TemplateBody,
        response=schemas.TemplateResult,
    ),
    Endpoint(
        "GET",
        "/v1/chat/sessions",
        list_sessions,
        "List sessions, newest activity first",
        OPERATOR,
        "sessions",
        response=schemas.SessionsPage,
        query=SESSION_FILTERS,
    ),
    Endpoint(
        "GET",
        "/v1/chat/stats",
        stats,
        "Session counters",
        OPERATOR,
        "sessions",
        response=schemas.Stats,
        query=(Query("agent_uuid", "Only this agent"),),
    ),
    Endpoint(
        "GET",
        "/v1/chat/session/{session_id}",
        get_session,
        "A session with its calls",
        ANY,
        "sessions",
        response=schemas.SessionDetail,
    ),
    Endpoint(
        "GET",
        "/v1/chat/session/{session_id}/messages",
        list_messages,
        "A session's thread in seq order",
        ANY,
        "sessions",
        response=schemas.MessagesPage,
        query=(
            Query("after_seq", "Only messages after this seq", {"type": "integer", "minimum": 0}),
            Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
            Query(
                "cursor",
                "`next_cursor` of the previous page: the seq it ends at (wins over after_seq)",
                {"type": "string", "pattern": schemas.SEQ_CURSOR},
            ),
            Query("include_private", "Whispers, context, tool calls, drafts (operator/admin)", {"type": "boolean"}),
        ),
    ),
]
