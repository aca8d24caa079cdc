"""The widget's public API (SPEC §14): `/widget/v1/*`, no API token.

Every call names its agent by the widget's public key (config, start) or by the visitor token
the start issued, and must come from one of the agent's `allowed_origins` (403 otherwise,
nothing stored). Only public messages leave (agent_core.widget.public_view).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from agent_core import inbound, widget
from agent_core.calls import request_call
from agent_core.models import PUBLIC_KEY_PATTERN, Agent, AgentStatus, Channel, Session, normalize_origin
from agent_core.store import IngestStatus, agents, messages, sessions, widgets
from agent_core.store.limits import Rate
from agent_core.widget import WidgetError
from gateway.api.common import store_of
from gateway.api.events import View, live_stream, resume_point
from gateway.api.routing import Endpoint, Query
from gateway.errors import Forbidden, NotFound, Unauthorized, Unprocessable, envelope
from gateway.http import limit_param, page, parse_body, seq_position
from gateway.limits import enforce
from gateway.widget import cors, tokens
from gateway.widget.tokens import Visitor

MESSAGES_PATH = "/widget/v1/messages"
# A message is capped in characters (WIDGET_MAX_MESSAGE_CHARS, a 422); the body in bytes (413).
MAX_REQUEST_BYTES = 64 * 1024
ERRORS = (401, 403, 404, 422, 429)


class UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=widget.MAX_USER_ID, description="The host site's user id")
    hash: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$", description="hex HMAC-SHA256(identity_secret, id), computed by the host's server"
    )


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=PUBLIC_KEY_PATTERN, description="The widget's public key (data-key)")
    lead: dict[str, Any] | None = Field(default=None, description="The lead form's values, by field name")
    user: UserRef | None = None
    visitor_token: str | None = Field(default=None, max_length=2000)


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, description="At most WIDGET_MAX_MESSAGE_CHARS characters")
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The widget's id for this message: a retried send with the same id is stored once",
    )


class CallBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(min_length=1, max_length=40, description="E.164, e.g. +15551234567")


async def signing_key(request: Request) -> str:
    key = getattr(request.app.state, "widget_signing_key", None)
    if key is None:
        key = await store_of(request).run(widgets.signing_key())
        request.app.state.widget_signing_key = key
    return str(key)


def request_origin(request: Request) -> str:
    """The page's origin: `Origin`, or this server's own for a browser's same-origin GET (which
    carries no Origin, only `Sec-Fetch-Site: same-origin`), e.g. the demo page's."""
    origin = request.headers.get("origin")
    if origin:
        return origin
    if request.headers.get("sec-fetch-site") == "same-origin":
        return normalize_origin(str(request.base_url))
    raise Forbidden("Origin: missing (the widget API answers browsers on the agent's allowed origins)")


def check_origin(request: Request, agent: Agent, origin: str) -> None:
    if not agent.widget.enabled:
        raise Forbidden("key: the web widget is not enabled on this agent")
    if origin not in agent.widget.allowed_origins:
        raise Forbidden(f"Origin: '{origin}' is not one of this agent's widget allowed_origins")
    cors.allow(request, origin)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _rate(per_period: float, period_s: float) -> Rate:
    return Rate(per_period, period_s)


async def _ip_limit(request: Request) -> None:
    app = request.app.state.settings.app
    await enforce(request, "widget_ip", client_ip(request), _rate(app.widget_requests_per_minute_ip, 60), "requests")


async def _agent_for_key(request: Request, origin: str, key: str) -> Agent:
    agent = await store_of(request).run(agents.by_public_key(key))
    if agent is None:
        raise NotFound("key: no widget has this public key (it may have been rotated)")
    check_origin(request, agent, origin)
    await _ip_limit(request)
    return agent


def public_agent(agent: Agent) -> dict[str, Any]:
    w = agent.widget
    return {
        "name": agent.name,
        "title": w.title or agent.name,
        "greeting": w.greeting or agent.welcome_message,
        "color": w.color,
        "lead_form": w.lead_form.model_dump(mode="json"),
        "online": agent.status is AgentStatus.active,
        "identity_verification": w.identity_secret is not None,
    }


def _presented_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("visitor_token") or None


async def _visitor(request: Request) -> tuple[Visitor, Agent, Session]:
    """The visitor, agent and session a request's token names; 401 without a good token,
    403 from an origin the agent does not allow, 404 once the session is gone."""
    origin = request_origin(request)
    raw = _presented_token(request)
    if not raw:
        raise Unauthorized("visitor_token: missing (send 'Authorization: Bearer <visitor_token>')")
    visitor = tokens.read(await signing_key(request), raw)
    if visitor is None:
        raise Unauthorized("visitor_token: not a token this gateway issued")
    store = store_of(request)
    agent = await store.run(agents.get_cached(visitor.agent_id))
    if agent is None:
        raise Unauthorized("visitor_token: its agent no longer exists")
    check_origin(request, agent, origin)
    await _ip_limit(request)
    session = await store.run(sessions.get(visitor.session_id))
    if session is None:
        raise NotFound("session: this conversation no longer exists; start a new one")
    if session.agent_id != visitor.agent_id or session.customer_id != visitor.customer_id:
        raise Forbidden("visitor_token: does not open this session")
    return visitor, agent, session


async def _issue(request: Request, agent: Agent, session: Session) -> str:
    return tokens.issue(await signing_key(request), Visitor(agent.id, session.id, session.customer_id))


async def config(request: Request) -> Response:
    origin = request_origin(request)
    key = request.query_params.get("key") or ""
    if not key:
        raise Unprocessable("key: query parameter is required")
    agent = await _agent_for_key(request, origin, key)
    return envelope({"agent": public_agent(agent)})


async def start(request: Request) -> Response:
    origin = request_origin(request)
    body = await parse_body(request, StartBody)
    agent = await _agent_for_key(request, origin, body.key)
    if agent.status is AgentStatus.archived:
        raise Unprocessable("key: this agent is offline (archived) and takes no conversations")
    store = store_of(request)
    customer_id: str | None = None
    hint: str | None = None
    if body.user is not None:
        try:
            customer_id = widget.verified_user(agent, body.user.id, body.user.hash)
        except WidgetError as exc:
            raise Forbidden(*exc.errors) from None
    elif body.visitor_token:
        visitor = tokens.read(await signing_key(request), body.visitor_token)
        if visitor is None or visitor.agent_id != agent.id:
            raise Unauthorized("visitor_token: not a token this gateway issued for this widget")
        customer_id, hint = visitor.customer_id, visitor.session_id
    session = await store.run(widget.find_open(agent, customer_id, hint)) if customer_id else None
    created = session is None
    if session is None:
        # A visitor whose conversation closed keeps the lead they gave for the next one.
        earlier = await store.run(sessions.get(hint)) if hint else None
        names = {f.name for f in agent.widget.lead_form.fields}
        kept = {k: v for k, v in (earlier.metadata.input_fields if earlier else {}).items() if k in names}
        values = {**kept, **(body.lead or {})}
        try:
            lead = widget.check_lead(agent.widget.lead_form, values)
        except WidgetError as exc:
            raise Unprocessable(*exc.errors) from None
        app = request.app.state.settings.app
        await enforce(
            request,
            "widget_sessions_ip",
            client_ip(request),
            _rate(app.widget_sessions_per_hour_ip, 3600),
            "new conversations from this address",
        )
        session = await store.run(widget.open_for(agent, customer_id or widget.new_visitor_id(), lead))
        if session is None:
            raise Unprocessable("key: this agent cannot take new conversations now")
    history = await store.run(widget.history(session, show_author=agent.widget.show_operator_names))
    return envelope(
        {
            "session_id": session.id,
            "visitor_token": await _issue(request, agent, session),
            "created": created,
            "session": widget.session_view(session),
            "agent": public_agent(agent),
            "messages": history,
        }
    )


async def post_message(request: Request) -> Response:
    visitor, agent, session = await _visitor(request)
    body = await parse_body(request, MessageBody)
    app = request.app.state.settings.app
    text = body.content.strip()
    if not text:
        raise Unprocessable("content: must not be blank")
    if len(text) > app.widget_max_message_chars:
        raise Unprocessable(f"content: at most {app.widget_max_message_chars} characters")
    ip = client_ip(request)
    await enforce(request, "widget_messages_ip", ip, _rate(app.widget_messages_per_minute_ip, 60), "messages")
    await enforce(
        request,
        "widget_visitor",
        visitor.customer_id,
        _rate(app.widget_messages_per_minute_visitor, 60),
        "messages from this visitor",
    )
    store = store_of(request)
    result = await store.run(
        inbound.receive(
            inbound.CustomerMessage(
                channel=Channel.web,
                customer_id=visitor.customer_id,
                text=text,
                agent_id=agent.id,
                session_id=session.id,
                dedupe=(("widget", f"{session.id}:{body.client_id}"),) if body.client_id else (),
                input_fields=session.metadata.input_fields,
            )
        )
    )
    if result.status is IngestStatus.archived:
        raise Unprocessable("key: this agent is offline (archived)")
    if result.status is IngestStatus.no_session:
        raise NotFound("session: this conversation no longer exists; start a new one")
    if result.status not in (IngestStatus.ok, IngestStatus.dup) or result.session_id is None or result.seq is None:
        raise Forbidden("visitor_token: does not open this session")
    stored = await store.run(messages.get(result.session_id, result.seq))
    view = widget.public_view(stored) if stored is not None else None
    if view is None:
        raise NotFound("message: not found")
    if result.session_id != session.id:
        # The conversation had been closed: the message opened the visitor's next one.
        moved = await store.run(sessions.get(result.session_id))
        if moved is not None:
            view["session_id"] = moved.id
            view["visitor_token"] = await _issue(request, agent, moved)
    return envelope(view)


async def list_messages(request: Request) -> Response:
    _, agent, session = await _visitor(request)
    after = seq_position(request)
    items, next_after = await store_of(request).run(
        messages.page(
            session.id, after_seq=after, limit=limit_param(request), last_seq=session.seq, include_private=False
        )
    )
    show = agent.widget.show_operator_names
    views = [v for v in (widget.public_view(m, show_author=show) for m in items) if v is not None]
    return envelope(page(views, str(next_after) if next_after is not None else None))


async def events(request: Request) -> Response:
    _, agent, session = await _visitor(request)
    show = agent.widget.show_operator_names
    view = View(
        include_private=False,
        message=lambda m: widget.public_view(m, show_author=show),
        session=widget.session_view,
        typing=True,
    )
    return live_stream(request, session.id, resume_point(request, session.seq), view)


async def call(request: Request) -> Response:
    """The visitor asks to be called (SPEC §8): the same `request_call` as the tool and the API,
    answering only what the visitor needs to know of the Call."""
    _, agent, session = await _visitor(request)
    body = await parse_body(request, CallBody)
    number = widget.phone_number(body.phone_number)
    if number is None:
        raise Unprocessable(f"phone_number: '{body.phone_number[:40]}' is not a phone number in E.164 format (+…)")
    placed = await store_of(request).run(
        request_call(session_id=session.id, agent=agent, reason="asked from the web chat", to=number, by="widget")
    )
    return envelope({"call_id": placed.id, "status": placed.status.value, "phone_number": placed.to}, status_code=202)


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


MESSAGE = _obj(
    id={"type": "string"},
    seq={"type": "integer"},
    role={"type": "string", "enum": ["customer", "agent", "operator"]},
    text={"type": "string"},
    created_at={"type": "string"},
    media={"type": "array"},
    author={"type": "string"},
    session_id={"type": "string"},
    visitor_token={"type": "string"},
)
AGENT = _obj(
    name={"type": "string"},
    title={"type": "string"},
    greeting={"type": ["string", "null"]},
    color={"type": "string"},
    lead_form={"type": "object"},
    online={"type": "boolean"},
    identity_verification={"type": "boolean"},
)
ORIGIN_HEADER = ("Origin",)
TOKEN_NOTE = "Needs the visitor token (Authorization: Bearer) from POST /widget/v1/sessions and an allowed Origin."

ENDPOINTS = [
    Endpoint(
        "GET",
        "/widget/v1/config",
        config,
        "The widget's look and lead form, before a conversation starts (nothing is stored)",
        None,
        "widget",
        response=_obj(agent=AGENT),
        query=(Query("key", "The widget's public key", {"type": "string", "pattern": PUBLIC_KEY_PATTERN}, True),),
        errors=ERRORS,
        headers=ORIGIN_HEADER,
    ),
    Endpoint(
        "POST",
        "/widget/v1/sessions",
        start,
        "Start or continue a visitor's conversation; returns its visitor token and thread",
        None,
        "widget",
        body=StartBody,
        response=_obj(
            session_id={"type": "string"},
            visitor_token={"type": "string"},
            created={"type": "boolean"},
            session={"type": "object"},
            agent=AGENT,
            messages={"type": "array", "items": MESSAGE},
        ),
        errors=ERRORS,
        headers=ORIGIN_HEADER,
    ),
    Endpoint(
        "POST",
        MESSAGES_PATH,
        post_message,
        "The visitor writes (the reply arrives on the stream)",
        None,
        "widget",
        body=MessageBody,
        response=MESSAGE,
        errors=(*ERRORS, 413),
        headers=ORIGIN_HEADER,
        description=TOKEN_NOTE,
    ),
    Endpoint(
        "GET",
        MESSAGES_PATH,
        list_messages,
        "The conversation's public messages in seq order",
        None,
        "widget",
        response=_obj(items={"type": "array", "items": MESSAGE}, next_cursor={"type": ["string", "null"]}),
        query=(
            Query("after_seq", "Only messages after this seq", {"type": "integer", "minimum": 0}),
            Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
            Query("cursor", "`next_cursor` of the previous page", {"type": "string", "pattern": r"^[0-9]+$"}),
        ),
        errors=ERRORS,
        headers=ORIGIN_HEADER,
        description=TOKEN_NOTE,
    ),
    Endpoint(
        "GET",
        "/widget/v1/events",
        events,
        "Server-Sent Events: `message` (id = seq), `typing`, `session`; resumable with Last-Event-ID",
        None,
        "widget",
        envelope=False,
        content_type="text/event-stream",
        response={"type": "string"},
        query=(
            Query("visitor_token", "The visitor token (EventSource cannot send headers)"),
            Query("after_seq", "Replay messages after this seq first (or send Last-Event-ID)", {"type": "integer"}),
        ),
        errors=ERRORS,
        headers=(*ORIGIN_HEADER, "Last-Event-ID"),
    ),
    Endpoint(
        "POST",
        "/widget/v1/call",
        call,
        "Ask for a phone call (SPEC §8)",
        None,
        "widget",
        body=CallBody,
        response={"type": "object"},
        errors=ERRORS,
        headers=ORIGIN_HEADER,
        description=TOKEN_NOTE,
    ),
]
