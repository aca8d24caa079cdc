"""The OpenAPI document against the real app: schemathesis generates requests from
`/openapi.json` and sends them through the app (ASGI, real Redis, an admin token).

It fails on any 5xx, on any request the document calls valid that the server refuses
(`positive_data_acceptance`), and on any response whose status, content type or body the
document does not declare. The runs are deterministic (a fixed seed, derandomized Hypothesis,
no example database), so a failure in CI is a failure on every machine.

Not fuzzed:
- the Twilio webhooks (`/twilio/*`): form posts signed with the account's auth token; an
  unsigned request is a 403 by design and a generated one is never signed;
- `GET /v1/chat/session/{session_id}/events`: a Server-Sent Events stream that never ends;
- the web widget (`/widget.js`, `/widget/*`): its API answers only an `Origin` the agent's
  widget allows, with the widget's public key or a visitor token the server signed (a generated
  one is refused by design, like an unsigned webhook); tests/gateway/test_widget_api.py covers it.

Some rules are stated in the document's descriptions because JSON Schema cannot say them;
for positive cases the test makes generated data obey them, and only these:
- a list's `cursor` must be one the API issued (the document gives its encoding; "issued" is
  not a pattern): generated ones are dropped, except message cursors, which are positions;
- references to stored things: `knowledge.document_ids` and search's `document_ids` must name
  stored documents, so they are replaced by the one document the test stores;
- rules across items: a multi-prompt's `initial_state` and transitions name its states and state
  names are unique; tool names are unique; a tool's `parameters` is a valid JSON Schema;
- state across requests: a number or messaging service routes to one agent, so every agent a
  case creates is archived (which releases its numbers) before the next case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks
from starlette.applications import Starlette

from agent_core.settings import Settings
from gateway.api.routing import openapi
from gateway.app import create_app, endpoints
from workers.schedules import Scheduler

SEED = 20_240_601
EXAMPLES_PER_OPERATION = 40
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.positive_data_acceptance,
]
HYPOTHESIS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
NOT_FUZZED = {"session_events"}
# Cursors that only the API can issue (the last id of a page, or an encoded position).
ISSUED_CURSORS = {"list_agents", "list_documents", "list_sessions"}


@pytest.fixture
def app(settings: Settings, redis_url: str, ctx: Any) -> Iterator[Starlette]:
    # A worker's heartbeat, so /readyz is ready (its 503 says no worker runs).
    Scheduler(name="fuzz-worker").tick()
    application = create_app(settings, redis_url)
    yield application
    # schemathesis keeps an app's lifespan running for the whole process; end this one's.
    asgi.shutdown_lifespans()


@pytest.fixture
def stored(app: Starlette, admin: dict[str, str]) -> dict[str, str]:
    """An agent, a session with a message, and a document, made through the API."""
    with asgi.get_client(app) as client:
        agent = client.post("/v1/agents", json={"name": "Fuzz"}, headers=admin).json()["data"]
        body = {"agent_uuid": agent["id"], "customer_id": "+15550001111", "content": "hello"}
        session_id = client.post("/v1/chat/inbound?wait=0", json=body, headers=admin).json()["data"]["session_id"]
        doc = {"name": "refunds.txt", "text": "Refunds take five days."}
        document_id = client.post("/v1/knowledge/documents", json=doc, headers=admin).json()["data"]["id"]
    return {
        "agent_id": agent["id"],
        "session_id": session_id,
        "document_id": document_id,
        "customer_id": body["customer_id"],
    }


def _operations() -> list[str]:
    doc = openapi(endpoints(), title="", version="", server="http://testserver")
    return [
        f"{method.upper()} {path}"
        for path, ops in doc["paths"].items()
        if not path.startswith(("/twilio/", "/widget"))
        for method, op in ops.items()
        if op["operationId"] not in NOT_FUZZED
    ]


@pytest.fixture
def api_schema(app: Starlette, admin: dict[str, str]) -> Any:
    config = schemathesis.Config.from_dict({"seed": SEED, "headers": dict(admin), "generation": {"database": "none"}})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def _valid_multi_prompt(prompt: dict[str, Any]) -> None:
    states, seen = [], set()
    for state in prompt.get("states") or []:
        if isinstance(state, dict) and state.get("name") not in seen:
            seen.add(state.get("name"))
            states.append(state)
    if not states:
        return
    first = states[0]["name"]
    prompt["states"], prompt["initial_state"] = states, first
    for state in states:
        for transition in state.get("transitions") or []:
            if isinstance(transition, dict):
                transition["to"] = first


def _valid_tools(tools: list[Any]) -> list[Any]:
    out, names = [], set()
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("name") in names:
            continue
        names.add(tool.get("name"))
        params = tool.get("parameters")
        if isinstance(params, dict):
            try:
                jsonschema.Draft202012Validator.check_schema(params)
            except jsonschema.SchemaError:
                tool["parameters"] = {"type": "object"}
        out.append(tool)
    return out


def _follow_unstated_rules(case: Any, document_id: str) -> None:
    """Make a positive case obey the rules the module docstring lists (JSON Schema cannot say them)."""
    op = case.operation.definition.raw.get("operationId")
    if op in ISSUED_CURSORS and isinstance(case.query, dict):
        case.query.pop("cursor", None)
    body = case.body
    if not isinstance(body, dict):
        return
    if op == "search" and isinstance(body.get("document_ids"), list):
        body["document_ids"] = [document_id]
    if op in ("create_agent", "patch_agent"):
        if isinstance(body.get("knowledge"), dict) and body["knowledge"].get("document_ids"):
            body["knowledge"]["document_ids"] = [document_id]
        if isinstance(body.get("prompt"), dict) and body["prompt"].get("type") == "multi":
            _valid_multi_prompt(body["prompt"])
        if isinstance(body.get("tools"), list):
            body["tools"] = _valid_tools(body["tools"])


@pytest.mark.parametrize("operation", _operations())
def test_the_server_does_what_its_openapi_document_says(
    operation: str, api_schema: Any, app: Starlette, admin: dict[str, str], stored: dict[str, str]
) -> None:
    method, path = operation.split(" ", 1)
    op = api_schema[path][method]
    # Reads of one thing get ids that exist, so their parameters are parsed past the 404.
    ids = {name: stored[name] for name in stored if method == "GET" and f"{{{name}}}" in path}

    def run(case: Any) -> None:
        if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
            _follow_unstated_rules(case, stored["document_id"])
        response = case.call_and_validate(headers=dict(admin), checks=CHECKS)
        if op.definition.raw["operationId"] == "create_agent" and response.status_code == 200:
            with asgi.get_client(app) as client:
                archived = client.delete(f"/v1/agents/{response.json()['data']['id']}", headers=dict(admin))
                assert archived.status_code == 200

    # An operation without free parameters or a body has no invalid request to generate.
    modes = [GenerationMode.POSITIVE]
    free = [p for p in op.definition.raw.get("parameters", []) if p["in"] != "path" or p["name"] not in ids]
    if free or "requestBody" in op.definition.raw:
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:
        strategy = op.as_strategy(generation_mode=mode, path_parameters=ids)
        HYPOTHESIS(given(case=strategy)(lambda case: run(case)))()
