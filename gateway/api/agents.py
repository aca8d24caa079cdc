"""Agents CRUD (SPEC §6.2) and the OSVI `active_agents` listing."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent_core import knowledge
from agent_core.models import Agent, AgentSpec, AgentStatus
from agent_core.store import agents
from agent_core.store.agents import SaveResult
from gateway.api.common import load_agent, store_of
from gateway.api.routing import Endpoint, Query, cursor_query
from gateway.api.schemas import ActiveAgent
from gateway.auth import ADMIN, ANY, OPERATOR
from gateway.errors import Unprocessable, envelope, validation_messages
from gateway.http import json_body, limit_param, page, query_enum


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as reads show it: the widget's identity secret is write-only (only whether one is set)."""
    return agent.model_dump(mode="json", exclude={"widget": {"identity_secret"}})


def _refuse_server_fields(body: dict[str, Any]) -> None:
    widget = body.get("widget")
    if isinstance(widget, dict) and widget.get("public_key") is not None:
        raise Unprocessable(
            "widget.public_key: set by the server when the widget is enabled "
            "(POST /v1/agents/{id}/widget/rotate_key replaces it)"
        )


def parse_spec(data: dict[str, Any]) -> AgentSpec:
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(*validation_messages(exc)) from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge, null removes (back to the default)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _saved(result: SaveResult) -> Agent:
    if result.status == "route_taken":
        raise Unprocessable(f"channels: '{result.route.removeprefix('mss:')}' already routes to agent '{result.owner}'")
    if result.status != "ok" or result.agent is None:
        raise Unprocessable(f"agent: could not be saved ({result.status}); retry")
    return result.agent


SPEC_FIELDS = frozenset(AgentSpec.model_fields)


def _patch_model() -> type[BaseModel]:
    """The PATCH body as the document states it: AgentSpec's fields, each optional and nullable
    (null resets it), and no others (`patch_agent` refuses unknown keys)."""
    fields: dict[str, Any] = {}
    for name, info in AgentSpec.model_fields.items():
        inner: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        if info.discriminator is not None:
            inner = Annotated[inner, Field(discriminator=info.discriminator)]
        fields[name] = (inner | None, Field(default=None, description=info.description))
    return create_model(
        "AgentPatch",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A JSON merge patch (RFC 7396) of an AgentSpec: objects merge into the agent's, "
        "null resets a field to its default, and the merged agent must be valid (422 otherwise).",
        **fields,
    )


AgentPatch = _patch_model()


def _spec_dict(agent: Agent) -> dict[str, Any]:
    return agent.model_dump(mode="json", include=set(SPEC_FIELDS))


async def check_knowledge(request: Request, spec: AgentSpec) -> None:
    problems = await store_of(request).run(knowledge.check_document_ids(list(spec.knowledge.document_ids)))
    if problems:
        raise Unprocessable(*problems)


async def create_agent(request: Request) -> Response:
    body = await json_body(request)
    _refuse_server_fields(body)
    spec = parse_spec(body)
    await check_knowledge(request, spec)
    agent = _saved(await store_of(request).run(agents.create(spec)))
    return envelope(agent_json(agent))


async def list_agents(request: Request) -> Response:
    status = query_enum(request, "status", tuple(s.value for s in AgentStatus))
    try:
        items, cursor = await store_of(request).run(
            agents.list_page(limit=limit_param(request), cursor=request.query_params.get("cursor"), status=status)
        )
    except ValueError:
        raise Unprocessable("cursor: not a cursor this API issued") from None
    return envelope(page([agent_json(a) for a in items], cursor))


async def get_agent(request: Request) -> Response:
    agent = await load_agent(store_of(request), request.path_params["agent_id"], field="agent_id")
    return envelope(agent_json(agent))


async def apply_patch(request: Request, agent_id: str, patch: dict[str, Any]) -> Agent:
    """A JSON merge patch of an agent's spec (PATCH /v1/agents/{id}; the console's knowledge
    upload attaches a document with it)."""
    store = store_of(request)
    unknown = sorted(set(patch) - SPEC_FIELDS)
    if unknown:
        raise Unprocessable(*(f"{k}: unknown field (or not changeable)" for k in unknown))
    _refuse_server_fields(patch)
    current = await load_agent(store, agent_id, field="agent_id")
    spec = parse_spec(merge_patch(_spec_dict(current), patch))
    if "knowledge" in patch:
        await check_knowledge(request, spec)
    return _saved(await store.run(agents.replace(current.id, spec)))


async def patch_agent(request: Request) -> Response:
    patch = await json_body(request)
    agent = await apply_patch(request, request.path_params["agent_id"], patch)
    return envelope(agent_json(agent))


async def delete_agent(request: Request) -> Response:
    store = store_of(request)
    current = await load_agent(store, request.path_params["agent_id"], field="agent_id")
    spec = parse_spec({**_spec_dict(current), "status": AgentStatus.archived.value})
    agent = _saved(await store.run(agents.replace(current.id, spec)))
    return envelope(agent_json(agent))


async def rotate_widget_key(request: Request) -> Response:
    store = store_of(request)
    current = await load_agent(store, request.path_params["agent_id"], field="agent_id")
    if current.widget.public_key is None:
        raise Unprocessable("widget: not enabled on this agent yet (enable it to get a public_key)")
    agent = _saved(await store.run(agents.rotate_widget_key(current.id)))
    return envelope(agent_json(agent))


async def active_agents(request: Request) -> Response:
    store = store_of(request)
    all_agents = await store.run(agents.get_many(await store.run(agents.all_ids())))
    body = [
        {"agent_id": a.id, "name": a.name, "status": a.status.value}
        for a in all_agents
        if a.status is AgentStatus.active
    ]
    return JSONResponse(body)


ENDPOINTS = [
    Endpoint("POST", "/v1/agents", create_agent, "Create an agent", ADMIN, "agents", body=AgentSpec, response=Agent),
    Endpoint(
        "GET",
        "/v1/agents",
        list_agents,
        "List agents (creation order)",
        OPERATOR,
        "agents",
        response={
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        query=(
            Query("status", "active | archived", {"type": "string", "enum": ["active", "archived"]}),
            Query("limit", "Page size (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
            cursor_query("the last agent's id"),
        ),
    ),
    Endpoint("GET", "/v1/agents/{agent_id}", get_agent, "An agent", OPERATOR, "agents", response=Agent),
    Endpoint(
        "PATCH",
        "/v1/agents/{agent_id}",
        patch_agent,
        "Change an agent (JSON merge patch)",
        ADMIN,
        "agents",
        body=AgentPatch,
        response=Agent,
    ),
    Endpoint(
        "DELETE",
        "/v1/agents/{agent_id}",
        delete_agent,
        "Archive an agent",
        ADMIN,
        "agents",
        description="Archives, it does not erase: the agent stays readable (status archived), takes no new "
        "sessions and releases its numbers. DELETE again answers the same.",
        response={
            "allOf": [
                {"$ref": "#/components/schemas/Agent"},
                {"properties": {"status": {"const": AgentStatus.archived.value}}},
            ]
        },
    ),
    Endpoint(
        "POST",
        "/v1/agents/{agent_id}/widget/rotate_key",
        rotate_widget_key,
        "Replace the widget's public key (the old one stops working at once)",
        ADMIN,
        "agents",
        response=Agent,
    ),
    Endpoint(
        "GET",
        "/v1/active_agents",
        active_agents,
        "Active agents (OSVI shape: a bare array)",
        ANY,
        "agents",
        response={"type": "array", "items": ActiveAgent.model_json_schema()},
        envelope=False,
    ),
]
