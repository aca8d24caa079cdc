"""Escalation calls over the API (SPEC §6.2, §8): trigger one, list and read them, and the
external voice agent's result."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from agent_core.calls import calls_of_session, get_call, parse_call, report_result, request_call
from agent_core.models import E164, CallStatus
from agent_core.store import calls as stored
from agent_core.store.tokens import TokenRecord
from gateway.api import schemas
from gateway.api.common import load_agent, load_session, store_of
from gateway.api.routing import Endpoint, Query, cursor_query
from gateway.auth import ANY, OPERATOR
from gateway.errors import NotFound, Unprocessable, envelope
from gateway.http import limit_param, page, parse_body, query_enum

FINAL = [s.value for s in CallStatus if s.terminal]


class CallBody(schemas.Lenient):
    reason: str | None = Field(default=None, max_length=500)
    to: str | None = Field(
        default=None,
        description="E.164 number to call (needed for api and web sessions)",
        json_schema_extra={"pattern": E164.pattern},
    )


class TranscriptItem(BaseModel):
    role: Literal["agent", "customer"]
    text: str = Field(max_length=5_000)
    at: str | None = Field(default=None, max_length=40)


class ResultBody(schemas.Lenient):
    status: Annotated[str, Field(json_schema_extra={"enum": FINAL})]
    summary: str | None = Field(default=None, max_length=5_000)
    transcript: list[TranscriptItem] | None = Field(default=None, max_length=1_000)


async def trigger(request: Request) -> Response:
    body = await parse_body(request, CallBody)
    store = store_of(request)
    session = await load_session(request)
    agent = await load_agent(store, session.agent_id)
    token: TokenRecord = request.state.token
    call = await store.run(
        request_call(session_id=session.id, agent=agent, reason=body.reason, to=body.to, by=token.name)
    )
    return envelope(call.api_json(), status_code=202)


async def list_calls(request: Request) -> Response:
    store = store_of(request)
    agent_id = request.query_params.get("agent_uuid") or None
    if agent_id:
        await load_agent(store, agent_id)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not cursor.isdigit():
        raise Unprocessable("cursor: not a cursor this API issued")
    found, next_cursor = await store.run(
        stored.page(
            session_id=request.query_params.get("session_id") or None,
            agent_id=agent_id,
            status=query_enum(request, "status", tuple(s.value for s in CallStatus)),
            limit=limit_param(request),
            before=int(cursor) if cursor else None,
        )
    )
    items = [parse_call(c).api_json() for c in found]
    return envelope(page(items, str(next_cursor) if next_cursor is not None else None))


async def read_call(request: Request) -> Response:
    call_id = request.path_params["call_id"]
    call = await store_of(request).run(get_call(call_id))
    if call is None:
        raise NotFound(f"call_id: no call with id '{call_id}'")
    return envelope(call.api_json())


async def result(request: Request) -> Response:
    body = await parse_body(request, ResultBody)
    if body.status not in FINAL:
        raise Unprocessable(f"status: must be one of {FINAL}")
    call = await store_of(request).run(
        report_result(
            call_id=request.path_params["call_id"],
            status=CallStatus(body.status),
            summary=body.summary,
            transcript=[t.model_dump() for t in body.transcript] if body.transcript else None,
        )
    )
    return envelope(call.api_json())


async def session_calls(request: Request, session_id: str) -> list[dict[str, object]]:
    """The session object's `calls` (newest first)."""
    return [c.api_json() for c in await store_of(request).run(calls_of_session(session_id))]


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/chat/session/{session_id}/call",
        trigger,
        "Escalate the chat to a phone call (202 with the Call; 422 says why not)",
        ANY,
        "calls",
        body=CallBody,
        response=schemas.CallOut,
    ),
    Endpoint(
        "GET",
        "/v1/calls",
        list_calls,
        "Escalation calls, newest first",
        OPERATOR,
        "calls",
        response=schemas.CallsPage,
        query=(
            Query("session_id", "Only this session's calls"),
            Query("agent_uuid", "Only this agent's calls"),
            Query("status", "Only calls in this status", {"type": "string", "enum": [s.value for s in CallStatus]}),
            Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
            cursor_query(
                "the sequence number the next page starts below", {"type": "string", "pattern": "^[0-9]{1,18}$"}
            ),
        ),
    ),
    Endpoint("GET", "/v1/calls/{call_id}", read_call, "One escalation call", ANY, "calls", response=schemas.CallOut),
    Endpoint(
        "POST",
        "/v1/calls/{call_id}/result",
        result,
        "An external voice agent reports the call's outcome (finishes it like a status callback)",
        ANY,
        "calls",
        body=ResultBody,
        response=schemas.CallOut,
    ),
]
