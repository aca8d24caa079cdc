"""Customers: memory (read) and erasure of all their data (SPEC §6.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from agent_core.store import agents, customers, memory
from gateway.api.common import load_agent, store_of
from gateway.api.routing import Endpoint, Query
from gateway.auth import ADMIN, OPERATOR
from gateway.errors import envelope
from gateway.http import limit_param

MEMORY_ITEM = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "summary": {"type": "string"},
        "created_at": {"type": "string"},
        "kind": {"type": "string"},
        "agent_id": {"type": "string"},
    },
}


async def get_memory(request: Request) -> Response:
    store = store_of(request)
    customer_id = request.path_params["customer_id"]
    agent_id = request.query_params.get("agent_uuid")
    if agent_id:
        await load_agent(store, agent_id)
        ids = [agent_id]
    else:
        ids = await store.run(agents.all_ids())
    items = await store.run(memory.of_customer(customer_id, ids, limit=limit_param(request)))
    return envelope({"customer_id": customer_id, "items": items})


async def erase_customer(request: Request) -> Response:
    customer_id = request.path_params["customer_id"]
    removed = await store_of(request).run(customers.erase(customer_id))
    return envelope({"customer_id": customer_id, "removed": removed})


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/customers/{customer_id}/memory",
        get_memory,
        "What the agents remember about a customer (summaries of earlier sessions and calls), newest first",
        OPERATOR,
        "customers",
        response={
            "type": "object",
            "properties": {"customer_id": {"type": "string"}, "items": {"type": "array", "items": MEMORY_ITEM}},
        },
        query=(
            Query("agent_uuid", "Only this agent's memory"),
            Query("limit", "At most this many (1-200, default 50)", {"type": "integer", "minimum": 1, "maximum": 200}),
        ),
    ),
    Endpoint(
        "DELETE",
        "/v1/customers/{customer_id}",
        erase_customer,
        "Erase all of a customer's data: sessions, messages, memory, calls; says what it removed",
        ADMIN,
        "customers",
        response={
            "type": "object",
            "properties": {
                "customer_id": {"type": "string"},
                "removed": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
    ),
]
