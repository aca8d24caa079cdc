"""The `request_call` tool through a real turn with a model (OpenAI mocked at the HTTP seam):
the tool places the call only with a valid number, and the model reads the outcome — or the
reason it was refused — as the tool's result. Twilio is not configured: the dev outbox."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core.store import Store, outbound
from tests.fakes import FakeLLM, completion
from tests.helpers import eventually


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_the_model_requests_a_call_and_reads_why_it_was_refused_then_placed(
    client: TestClient, admin: dict[str, str], ctx: Any, store: Store, fake_llm: FakeLLM, workers: Any
) -> None:
    numbers = iter(["not-a-number", "+15551234567"])

    def model(body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][-1]["role"] == "tool":
            return completion("Okay.")
        offered = {t["function"]["name"] for t in body.get("tools", [])}
        assert "request_call" in offered
        return completion(None, tool_calls=[("request_call", {"reason": "refund", "phone_number": next(numbers)})])

    fake_llm.handler = model
    agent = client.post(
        "/v1/agents",
        json={"name": "Acme", "escalation": {"enabled": True, "from_number": "+15550001111"}},
        headers=admin,
    ).json()["data"]
    body = {"agent_uuid": agent["id"], "customer_id": "web-7", "content": "yes please call me"}
    assert client.post("/v1/chat/inbound", json=body, headers=admin).status_code == 200
    refused = tool_results(fake_llm.requests[-1])[-1]
    assert refused.startswith("error: the call was not requested: phone_number:") and "E.164" in refused
    assert client.post("/v1/chat/inbound", json={**body, "content": "+15551234567"}, headers=admin).status_code == 200
    placed = tool_results(fake_llm.requests[-1])[-1]
    assert "+15551234567" in placed and "being placed" in placed
    sid = client.get("/v1/chat/sessions", headers=admin).json()["data"]["items"][0]["id"]

    def placed_call() -> dict[str, Any] | None:
        calls = client.get(f"/v1/chat/session/{sid}", headers=admin).json()["data"]["calls"]
        return calls[0] if calls and calls[0]["twilio_call_sid"] else None

    call = eventually(placed_call)
    assert call["to"] == "+15551234567" and call["requested_by"] == "agent" and call["placed"] is False
    assert call["chat_summary"]
    entry = store.run(outbound.dev_outbox(5))[0]
    assert entry["kind"] == "call" and entry["to"] == "+15551234567" and call["id"] in entry["url"]


def test_request_call_is_not_offered_when_escalation_is_disabled(
    client: TestClient, admin: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    agent = client.post("/v1/agents", json={"name": "Plain"}, headers=admin).json()["data"]
    body = {"agent_uuid": agent["id"], "customer_id": "web-8", "content": "call me"}
    assert client.post("/v1/chat/inbound", json=body, headers=admin).status_code == 200
    offered = {t["function"]["name"] for t in fake_llm.requests[-1].get("tools", [])}
    assert "request_call" not in offered and "end_call" not in offered
