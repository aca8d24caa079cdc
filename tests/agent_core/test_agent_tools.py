"""Custom HTTP tools, multi-prompt transitions and set_field, the tool loop, and the prompt budget."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from agent_core.models import Agent, AgentSpec, Channel, Message, Role, Session, SessionMetadata
from agent_core.prompts import OMITTED_NOTE, PromptInputs, build_messages
from tests.conftest import LLM_BASE
from tests.fakes import FakeLLM, completion
from tests.helpers import send

TOOL_URL = "https://erp.example.com/orders"
ORDER_TOOL = {
    "name": "lookup_order",
    "description": "Look up an order by number",
    "parameters": {
        "type": "object",
        "properties": {"order_number": {"type": "string", "pattern": "^[0-9]+$"}},
        "required": ["order_number"],
        "additionalProperties": False,
    },
    "url": TOOL_URL,
    "method": "POST",
    "headers": {"Authorization": "Bearer erp-secret"},
    "timeout_s": 2,
}


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def net() -> Any:
    llm = FakeLLM()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{LLM_BASE}/chat/completions").mock(side_effect=llm.respond)
        yield llm, router


def tool_then_answer(name: str, args: dict[str, Any]) -> Any:
    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][-1]["role"] == "tool":
            return completion("tool said: " + body["messages"][-1]["content"])
        return completion(None, [(name, args)])

    return handler


def private_tool_calls(client: TestClient, h: dict[str, str], sid: str) -> list[dict[str, Any]]:
    items = client.get(f"/v1/chat/session/{sid}/messages?include_private=1&limit=200", headers=h).json()["data"][
        "items"
    ]
    return [m for m in items if m.get("kind") == "tool_call"]


def test_custom_tool_valid_call(client: TestClient, admin: dict[str, str], net: Any, workers: Any) -> None:
    llm, router = net
    agent = client.post("/v1/agents", json={"name": "Shop", "tools": [ORDER_TOOL]}, headers=admin).json()["data"]
    route = router.post(TOOL_URL).mock(return_value=httpx.Response(200, json={"status": "shipped", "eta": "Friday"}))
    llm.handler = tool_then_answer("lookup_order", {"order_number": "4711"})
    data = send(client, admin, agent["id"], "where is order 4711?", customer="c")
    assert data["reply"] == 'tool said: {"status":"shipped","eta":"Friday"}'
    sent = route.calls[0].request
    assert json.loads(sent.content) == {"order_number": "4711"}
    assert (
        sent.headers["Authorization"] == "Bearer erp-secret" and sent.headers["X-Chat-Session-Id"] == data["session_id"]
    )
    offered = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    assert offered["lookup_order"]["parameters"] == ORDER_TOOL["parameters"]
    [record] = private_tool_calls(client, admin, data["session_id"])
    assert record["meta"]["ok"] is True and record["meta"]["tool"] == "lookup_order"


@pytest.mark.parametrize(
    ("args", "response", "expected"),
    [
        (
            {"order_number": "abc"},
            None,
            "tool said: error: invalid arguments: order_number: 'abc' does not match '^[0-9]+$'",
        ),
        ({"order_number": "1"}, httpx.TimeoutException("slow"), "tool said: error: the tool did not answer within 2 s"),
        (
            {"order_number": "1"},
            httpx.Response(500, text="db down"),
            "tool said: error: the tool answered HTTP 500: db down",
        ),
        ({"order_number": "1"}, httpx.Response(200, text="x" * 5000), None),
    ],
)
def test_custom_tool_failures_are_reported_to_the_model(
    client: TestClient,
    admin: dict[str, str],
    net: Any,
    workers: Any,
    args: dict[str, Any],
    response: Any,
    expected: str | None,
) -> None:
    llm, router = net
    agent = client.post("/v1/agents", json={"name": "Shop", "tools": [ORDER_TOOL]}, headers=admin).json()["data"]
    route = router.post(TOOL_URL)
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    elif response is not None:
        route.mock(return_value=response)
    llm.handler = tool_then_answer("lookup_order", args)
    data = send(client, admin, agent["id"], "order?", customer="c")
    if expected is None:
        assert data["reply"].startswith("tool said: xxxx") and "[truncated: 1000 more characters]" in data["reply"]
    else:
        assert data["reply"] == expected
    if response is None:
        assert route.call_count == 0
    [record] = private_tool_calls(client, admin, data["session_id"])
    assert record["meta"]["ok"] is (expected is None)


def test_tool_schema_must_be_valid(client: TestClient, admin: dict[str, str]) -> None:
    bad = {**ORDER_TOOL, "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}
    r = client.post("/v1/agents", json={"name": "Shop", "tools": [bad]}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0].startswith("tools.0.parameters: not a valid JSON Schema")
    clash = {**ORDER_TOOL, "name": "request_human"}
    r = client.post("/v1/agents", json={"name": "Shop", "tools": [clash]}, headers=admin)
    assert r.json()["errors"] == ["tools: tool name(s) ['request_human'] are reserved for built-in tools"]


MULTI = {
    "type": "multi",
    "initial_state": "greeting",
    "states": [
        {
            "name": "greeting",
            "prompt": "Greet and find out what they need.",
            "transitions": [{"to": "billing", "when": "the customer has a billing question"}],
        },
        {
            "name": "billing",
            "prompt": "Resolve billing questions. Ask for the invoice number.",
            "transitions": [{"to": "greeting", "when": "the billing question is resolved"}],
        },
        {"name": "closing", "prompt": "Say goodbye."},
    ],
}


def test_multi_prompt_transitions_allowed_and_refused(
    client: TestClient, admin: dict[str, str], net: Any, workers: Any
) -> None:
    llm, _ = net
    agent = client.post("/v1/agents", json={"name": "Multi", "prompt": MULTI}, headers=admin).json()["data"]
    llm.handler = tool_then_answer("transition", {"state": "closing"})
    data = send(client, admin, agent["id"], "hello", customer="c")
    assert data["state"] == "greeting"
    assert "error: invalid arguments: cannot move to state 'closing'" in data["reply"]
    assert "Greet and find out what they need." in llm.requests[0]["messages"][0]["content"]
    assert "- to 'billing': the customer has a billing question" in llm.requests[0]["messages"][0]["content"]
    llm.requests.clear()
    llm.handler = tool_then_answer("transition", {"state": "billing"})
    data = send(client, admin, agent["id"], "my invoice is wrong", customer="c")
    assert data["state"] == "billing"
    session = client.get(f"/v1/chat/session/{data['session_id']}", headers=admin).json()["data"]
    assert session["current_state"] == "billing"
    llm.requests.clear()
    llm.handler = tool_then_answer("set_field", {"name": "invoice_number", "value": "INV-9"})
    send(client, admin, agent["id"], "it is INV-9", customer="c")
    assert "Resolve billing questions." in llm.requests[0]["messages"][0]["content"]
    enum = next(t for t in llm.requests[0]["tools"] if t["function"]["name"] == "transition")
    assert enum["function"]["parameters"]["properties"]["state"]["enum"] == ["greeting"]
    session = client.get(f"/v1/chat/session/{data['session_id']}", headers=admin).json()["data"]
    assert session["metadata"]["state_fields"] == {"invoice_number": "INV-9"}
    llm.handler = lambda body: completion("ok")
    send(client, admin, agent["id"], "thanks", customer="c")
    assert "- invoice_number: INV-9" in llm.requests[-1]["messages"][0]["content"]


def _session(**meta: Any) -> Session:
    return Session(
        id="s",
        chat_agent_id=1,
        account_id=1,
        customer_id="c",
        mode="ai",
        help_requested=False,
        status="active",
        current_state="default",
        metadata=SessionMetadata(**meta),
        active_human=None,
        created_at="t",
        updated_at="t",
        agent_id="a",
        channel=Channel.api,
        customer_address=None,
        last_customer_message_at=None,
        last_activity_at=None,
        help_requested_at=None,
        help_reason=None,
        summary=None,
        closed_reason=None,
        opted_out=False,
    )


def test_prompt_budget_drops_oldest_turns_and_keeps_the_order_of_sections() -> None:
    agent = Agent(
        **AgentSpec(name="A", llm={"context_window": 1000, "max_tokens": 200}).model_dump(),
        id="a",
        chat_agent_id=1,
        created_at="t",
        updated_at="t",
    )
    thread = [
        Message(
            id=f"m{i}",
            session_id="s",
            seq=i,
            role=Role.customer if i % 2 else Role.agent,
            text=f"message {i} " + "x" * 300,
            created_at="t",
        )
        for i in range(1, 30)
    ]
    from agent_core.llm.base import Passage

    msgs = build_messages(
        PromptInputs(
            agent=agent,
            session=_session(input_fields={"name": "Bo"}, context=["ctx"]),
            thread=thread,
            memory=["remembered"],
            passages=[Passage("d", "FAQ", "passage text", 1.0)],
            whispers=["be kind"],
        )
    )
    system = msgs[0]["content"]
    order = [
        system.index(s)
        for s in ("You are a helpful", "chat window", "name: Bo", "remembered", "ctx", "passage text", "be kind")
    ]
    assert order == sorted(order)
    assert OMITTED_NOTE in system
    total = sum(len(m["content"]) for m in msgs)
    assert total <= (1000 - 200) * 4 + len(OMITTED_NOTE) + 2
    assert msgs[-1]["content"].startswith("message 29")
    assert len(msgs) < len(thread) + 1


def test_prompt_budget_trims_knowledge_before_it_crowds_out_the_conversation() -> None:
    from agent_core.llm.base import Passage

    agent = Agent(
        **AgentSpec(name="A", llm={"context_window": 2000, "max_tokens": 200}).model_dump(),
        id="a",
        chat_agent_id=1,
        created_at="t",
        updated_at="t",
    )
    passages = [Passage("d", "FAQ", f"passage {i} " + "y" * 900, 1.0 - i / 10) for i in range(8)]
    thread = [Message(id="m1", session_id="s", seq=1, role=Role.customer, text="question?", created_at="t")]
    msgs = build_messages(PromptInputs(agent=agent, session=_session(), thread=thread, passages=passages))
    system = msgs[0]["content"]
    assert "passage 0 " in system and "passage 7 " not in system
    assert len(system) <= (2000 - 200) * 4 * 0.6
    assert msgs[-1] == {"role": "user", "content": "question?"}
