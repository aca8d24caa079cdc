"""Console pages and actions (SPEC §10): clients of the same store and support functions as
the API, never a second copy of a rule."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from agent_core.calls import calls_of_session, request_call
from agent_core.models import Agent, Channel, Session, SessionMode, SessionStatus
from agent_core.store import AsyncStore, agents, documents, memory, messages, notices, outbound, sessions
from agent_core.store.sessions import SessionFilter
from agent_core.support import Command, CommandError, availability, run_command, send_template
from gateway.api import agents as agents_api
from gateway.api import knowledge as knowledge_api
from gateway.api import schemas
from gateway.console import auth, views
from gateway.console.auth import Operator
from gateway.console.render import page
from gateway.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from gateway.http import validate

PAGE_SIZE = 50
OUTBOX_SIZE = 200
# The inbox is shown oldest request first; the listing is newest activity first, so the inbox
# reads this many help requests and sorts them (more are a next page).
INBOX_SIZE = 100
THREAD_MAX = 2000
FILTER_KEYS = ("agent", "status", "mode", "channel", "q", "help", "view")


def store_of(request: Request) -> AsyncStore:
    return request.app.state.store  # type: ignore[no-any-return]


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)


def wants_json(request: Request) -> bool:
    return "x-csrf-token" in request.headers or "application/json" in request.headers.get("accept", "")


async def signed_in(request: Request) -> Operator:
    """The operator for a script-driven request (401 otherwise)."""
    operator = await auth.current(request)
    if operator is None:
        raise Unauthorized("console: not signed in (or the session expired); sign in again")
    return operator


async def checked(request: Request, form: Any = None) -> Operator:
    """The operator for a state-changing request whose CSRF token matches (403 otherwise)."""
    operator = await signed_in(request)
    presented = request.headers.get("x-csrf-token") or (form.get("csrf_token") if form is not None else None)
    if not auth.csrf_ok(request, operator, presented if isinstance(presented, str) else None):
        raise Forbidden("csrf_token: missing or wrong (reload the page and try again)")
    return operator


async def agent_map(store: AsyncStore) -> dict[str, Agent]:
    found = await store.run(agents.get_many(await store.run(agents.all_ids())))
    return {a.id: a for a in found}


def nav(request: Request, operator: Operator, current: str) -> dict[str, Any]:
    return {
        "operator": operator.name,
        "role": operator.token.role.value,
        "csrf": operator.login.csrf,
        "current": current,
        "dev_outbox": not request.app.state.settings.twilio.configured,
    }


# Login


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/console") and not value.startswith("//") else "/console"


async def login_page(request: Request) -> Response:
    if await auth.current(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request, None, 200)


def _login_form(request: Request, error: str | None, status: int) -> Response:
    csrf = auth.new_login_csrf()
    response = page(
        "login.html", status_code=status, error=error, next=_safe_next(request.query_params.get("next")), csrf=csrf
    )
    auth.set_login_csrf(request, response, csrf)
    return response


async def login_submit(request: Request) -> Response:
    form = await request.form()
    csrf = form.get("csrf_token")
    if not auth.login_csrf_ok(request, csrf if isinstance(csrf, str) else ""):
        return _login_form(request, "csrf_token: the form expired or came from another site; try again", 403)
    token = form.get("token")
    target = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
    response = RedirectResponse(target, status_code=303)
    try:
        await auth.log_in(request, token if isinstance(token, str) else "", response)
    except auth.LoginRefused as exc:
        status = 403 if "cannot use the console" in str(exc) else 401
        return _login_form(request, str(exc), status)
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    operator = await auth.current(request)
    response = RedirectResponse("/console/login", status_code=303)
    if operator is None:
        return response
    presented = form.get("csrf_token")
    if not auth.csrf_ok(request, operator, presented if isinstance(presented, str) else None):
        raise Forbidden("csrf_token: missing or wrong (reload the page and try again)")
    await auth.log_out(request, operator, response)
    return response


# Sessions page


def session_filter(request: Request) -> tuple[SessionFilter, str]:
    """The filter a sessions page (or its live stream) shows, from its shareable query."""
    q = request.query_params

    def one_of(name: str, allowed: tuple[str, ...]) -> str | None:
        value = q.get(name) or None
        if value is not None and value not in allowed:
            raise Unprocessable(f"{name}: must be one of {', '.join(allowed)}")
        return value

    help_raw = one_of("help", ("yes", "no"))
    view = one_of("view", ("all", "inbox")) or "all"
    flt = SessionFilter(
        agent_id=q.get("agent") or None,
        status=one_of("status", tuple(s.value for s in SessionStatus)),
        mode=one_of("mode", tuple(m.value for m in SessionMode)),
        channel=one_of("channel", tuple(c.value for c in Channel)),
        help_requested=None if help_raw is None else help_raw == "yes",
        q=(q.get("q") or "").strip() or None,
    )
    if view == "inbox":
        flt = replace(flt, help_requested=True)
    return flt, view


async def rows_for(store: AsyncStore, found: list[Session], agents_by_id: dict[str, Agent]) -> list[dict[str, Any]]:
    previews = await store.run(messages.last_public_many([(s.id, s.seq) for s in found]))
    return [
        views.session_row(
            s, agents_by_id[s.agent_id].name if s.agent_id in agents_by_id else s.agent_id, previews[s.id]
        )
        for s in found
    ]


async def listed(
    store: AsyncStore, flt: SessionFilter, view: str, cursor: str | None
) -> tuple[list[Session], str | None]:
    limit = INBOX_SIZE if view == "inbox" else PAGE_SIZE
    try:
        found, next_cursor = await store.run(sessions.list_page(flt, limit=limit, cursor=cursor))
    except ValueError:
        raise Unprocessable("cursor: not a cursor this console issued") from None
    if view == "inbox":
        found.sort(key=lambda s: s.help_requested_at or s.updated_at)
    return found, next_cursor


async def sessions_page(request: Request) -> Response:
    operator = await auth.current(request)
    if operator is None:
        return to_login(request)
    store = store_of(request)
    agents_by_id = await agent_map(store)
    try:
        flt, view = session_filter(request)
        if flt.agent_id and flt.agent_id not in agents_by_id:
            raise Unprocessable(f"agent: no agent with id '{flt.agent_id[:80]}'")
        found, next_cursor = await listed(store, flt, view, request.query_params.get("cursor") or None)
        error = None
    except Unprocessable as exc:
        flt, view, found, next_cursor, error = SessionFilter(), "all", [], None, "; ".join(exc.errors)
    stats = await store.run(sessions.stats(flt.agent_id))
    query = {k: request.query_params[k] for k in FILTER_KEYS if request.query_params.get(k)}
    return page(
        "sessions.html",
        status_code=422 if error else 200,
        nav=nav(request, operator, "inbox" if view == "inbox" else "sessions"),
        error=error,
        view=view,
        stats=stats,
        rows=await rows_for(store, found, agents_by_id),
        agents=sorted(agents_by_id.values(), key=lambda a: a.name.lower()),
        channels=[c.value for c in Channel],
        query=query,
        first_page=not request.query_params.get("cursor"),
        next_url=f"/console?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        events_url=f"/console/events?{urlencode(query)}",
        link=lambda **changes: "/console?" + urlencode({k: v for k, v in {**query, **changes}.items() if v}),
    )


# Session page


async def panel_for(store: AsyncStore, session: Session, operator: Operator) -> dict[str, Any]:
    agent = await store.run(agents.get(session.agent_id))
    can = availability(session, agent, operator.name) if agent else {}
    remembered = await store.run(memory.recall(session.agent_id, session.customer_id, 20))
    calls = await store.run(calls_of_session(session.id))
    return {
        **views.session_panel(session, agent, can, remembered, operator.name, calls),
        "csrf": operator.login.csrf,
    }


async def session_page(request: Request) -> Response:
    operator = await auth.current(request)
    if operator is None:
        return to_login(request)
    store = store_of(request)
    sid = request.path_params["session_id"]
    session = await store.run(sessions.get(sid))
    if session is None:
        return page("error.html", status_code=404, nav=nav(request, operator, ""), error=f"No session with id {sid}.")
    first = max(0, session.seq - THREAD_MAX)
    items, _ = await store.run(
        messages.page(sid, after_seq=first, limit=THREAD_MAX, last_seq=session.seq, include_private=True)
    )
    return page(
        "session.html",
        nav=nav(request, operator, "sessions"),
        panel=await panel_for(store, session, operator),
        thread=[views.message_view(m) for m in items],
        truncated=first > 0,
        last_seq=session.seq,
        error=request.query_params.get("error"),
    )


def _back(sid: str, error: str | None = None) -> Response:
    suffix = f"?{urlencode({'error': error})}" if error else ""
    return RedirectResponse(f"/console/sessions/{sid}{suffix}", status_code=303)


async def _agent_of(store: AsyncStore, sid: str) -> Agent:
    """The agent of the session an action names (404 for an unknown session)."""
    session = await store.run(sessions.get(sid))
    if session is None:
        raise NotFound(f"session_id: no session with id '{sid}'")
    agent = await store.run(agents.get(session.agent_id))
    if agent is None:
        raise NotFound(f"agent: no agent with id '{session.agent_id}'")
    return agent


async def command(request: Request) -> Response:
    form = await request.form()
    operator = await checked(request, form)
    sid = request.path_params["session_id"]
    raw = form.get("command")
    name = raw if isinstance(raw, str) else ""
    if name not in (*(c.value for c in Command), "message"):
        raise Unprocessable("command: must be one of takeover, tell, whisper, end, close, resolve, message")
    text = form.get("message")
    store = store_of(request)
    agent = await _agent_of(store, sid)
    try:
        result = await store.run(
            run_command(
                session_id=sid,
                agent=agent,
                operator=operator.name,
                command=None if name == "message" else Command(name),
                message=text if isinstance(text, str) else None,
            )
        )
    except CommandError as exc:
        if wants_json(request):
            raise
        return _back(sid, str(exc))
    if wants_json(request):
        return JSONResponse({"success": True, "data": result.data})
    return _back(sid)


async def typing(request: Request) -> Response:
    """The operator is writing in this session's composer: other open consoles show it."""
    operator = await checked(request)
    await store_of(request).run(notices.publish_typing(request.path_params["session_id"], operator.name))
    return Response(status_code=204)


async def template(request: Request) -> Response:
    """An approved template (Content SID), what may still go out past the WhatsApp window."""
    form = await request.form()
    operator = await checked(request, form)
    sid = request.path_params["session_id"]
    raw = form.get("content_sid")
    body = validate(schemas.TemplateBody, {"content_sid": raw.strip() if isinstance(raw, str) else raw})
    if await store_of(request).run(sessions.get(sid)) is None:
        raise NotFound(f"session_id: no session with id '{sid}'")
    try:
        data = await store_of(request).run(
            send_template(session_id=sid, operator=operator.name, content_sid=body.content_sid, content_variables=None)
        )
    except CommandError as exc:
        if wants_json(request):
            raise
        return _back(sid, str(exc))
    return JSONResponse({"success": True, "data": data}) if wants_json(request) else _back(sid)


async def place_call(request: Request) -> Response:
    """Operator-triggered escalation (SPEC §8) through the same `request_call` as the API."""
    form = await request.form()
    operator = await checked(request, form)
    sid = request.path_params["session_id"]
    store = store_of(request)
    agent = await _agent_of(store, sid)
    to, reason = form.get("to"), form.get("reason")
    try:
        call = await store.run(
            request_call(
                session_id=sid,
                agent=agent,
                reason=reason if isinstance(reason, str) else None,
                to=to if isinstance(to, str) and to.strip() else None,
                by=operator.name,
            )
        )
    except CommandError as exc:
        if wants_json(request):
            raise
        return _back(sid, str(exc))
    if wants_json(request):
        return JSONResponse({"success": True, "data": call.api_json()}, status_code=202)
    return _back(sid)


# Knowledge


async def knowledge_page(request: Request) -> Response:
    operator = await auth.current(request)
    if operator is None:
        return to_login(request)
    store = store_of(request)
    docs, next_cursor = await store.run(
        documents.list_page(limit=200, cursor=request.query_params.get("cursor") or None, archived=False)
    )
    agents_by_id = await agent_map(store)
    used: dict[str, list[str]] = {}
    for a in agents_by_id.values():
        for d in a.knowledge.document_ids:
            used.setdefault(d, []).append(a.name)
    return page(
        "knowledge.html",
        nav=nav(request, operator, "knowledge"),
        docs=[{**d.model_dump(mode="json"), "agents": used.get(d.id, [])} for d in docs],
        agents=sorted(agents_by_id.values(), key=lambda a: a.name.lower()),
        can_edit=operator.is_admin,
        next_url=f"/console/knowledge?{urlencode({'cursor': next_cursor})}" if next_cursor else None,
    )


async def _admin(request: Request, form: Any = None) -> Operator:
    operator = await checked(request, form)
    if not operator.is_admin:
        raise Forbidden("console: uploading and archiving documents needs an admin token")
    return operator


async def upload_document(request: Request) -> Response:
    """The knowledge API's upload, then (with `?agent=`) the document joins that agent's knowledge."""
    await _admin(request)
    agent_id = request.query_params.get("agent") or None
    if agent_id:
        # Refused before the file is read; read again below, as the patch must start from
        # the agent as it is then.
        await agents_api.load_agent(store_of(request), agent_id, field="agent")
    created = await knowledge_api.create_document(request)
    if agent_id and created.status_code == 200:
        doc = json.loads(bytes(created.body))["data"]
        agent = await agents_api.load_agent(store_of(request), agent_id, field="agent")
        ids = [*agent.knowledge.document_ids, doc["id"]]
        await agents_api.apply_patch(request, agent_id, {"knowledge": {"document_ids": ids}})
    return created


async def document_status(request: Request) -> Response:
    await signed_in(request)
    return await knowledge_api.get_document(request)


async def archive_document(request: Request) -> Response:
    await _admin(request, await request.form())
    archived = await knowledge_api.delete_document(request)
    return archived if wants_json(request) else RedirectResponse("/console/knowledge", status_code=303)


# Dev outbox


async def outbox_page(request: Request) -> Response:
    operator = await auth.current(request)
    if operator is None:
        return to_login(request)
    if request.app.state.settings.twilio.configured:
        return page(
            "error.html",
            status_code=404,
            nav=nav(request, operator, ""),
            error="Twilio is configured: messages are really sent, so there is no dev outbox.",
        )
    return page("outbox.html", nav=nav(request, operator, "outbox"), entries=await outbox_entries(store_of(request)))


async def outbox_entries(store: AsyncStore) -> list[dict[str, Any]]:
    return [views.outbox_entry(e) for e in await store.run(outbound.dev_outbox(OUTBOX_SIZE))]
