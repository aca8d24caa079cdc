"""Agent turns through real RQ workers, with OpenAI mocked at the HTTP seam (respx)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core.store import Change, Store, sessions
from tests.fakes import FakeLLM, completion, last_user_text
from tests.helpers import eventually, send, thread


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def agent(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    body = {
        "name": "Acme",
        "prompt": {"type": "single", "text": "You are Acme's support agent."},
        "llm": {"model": "gpt-4o-mini", "temperature": 0.1},
    }
    return client.post("/v1/agents", json=body, headers=admin).json()["data"]  # type: ignore[no-any-return]


def test_prompt_has_system_prompt_fields_context_and_thread(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    s = client.post(
        "/v1/chat/session",
        json={
            "agent_uuid": agent["id"],
            "customer_id": "c1",
            "input_fields": {"name": "Dana", "plan": "gold"},
            "context": ["Order #123 shipped Monday"],
        },
        headers=admin,
    ).json()["data"]
    first = send(client, admin, agent["id"], "Hi there")
    assert first["reply"] == "echo: Hi there" and first["session_id"] == s["id"]
    send(client, admin, agent["id"], "Where is order 123?")
    body = fake_llm.requests[-1]
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.1
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Acme's support agent.")
    assert "- name: Dana" in system["content"] and "- plan: gold" in system["content"]
    assert "Order #123 shipped Monday" in system["content"]
    assert [(m["role"], m["content"]) for m in body["messages"][1:]] == [
        ("user", "Hi there"),
        ("assistant", "echo: Hi there"),
        ("user", "Where is order 123?"),
    ]
    assert "request_human" in {t["function"]["name"] for t in body["tools"]}


def test_request_human_tool_sets_help_requested(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][-1]["role"] == "tool":
            return completion("A colleague will join shortly.")
        return completion(None, [("request_human", {"reason": "refund over limit"})])

    fake_llm.handler = handler
    data = send(client, admin, agent["id"], "I need a refund of $5000")
    assert data["reply"] == "A colleague will join shortly." and data["help_requested"] is True
    session = client.get(f"/v1/chat/session/{data['session_id']}", headers=admin).json()["data"]
    assert session["help_reason"] == "refund over limit" and session["help_requested_at"]
    tool_msg = next(m for m in thread(client, admin, data["session_id"]) if m.get("kind") == "tool_call")
    assert tool_msg["private"] is True and tool_msg["meta"]["tool"] == "request_human"
    assert all(m.get("kind") != "tool_call" for m in thread(client, admin, data["session_id"], private=False))
    second = fake_llm.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "request_human"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]


def test_unknown_tool_gets_an_error_result_not_a_crash(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][-1]["role"] == "tool":
            return completion("ok: " + body["messages"][-1]["content"])
        return completion(None, [("launch_rockets", {})])

    fake_llm.handler = handler
    assert send(client, admin, agent["id"], "go")["reply"] == "ok: error: there is no tool named 'launch_rockets'"


def test_tool_loop_is_capped(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    fake_llm.handler = lambda body: (
        completion("done")
        if body.get("tool_choice") == "none"
        else completion(None, [("request_human", {"reason": "again"})])
    )
    assert send(client, admin, agent["id"], "loop")["reply"] == "done"
    assert len(fake_llm.requests) == 5 and fake_llm.requests[-1]["tool_choice"] == "none"


@pytest.mark.parametrize("status", [500, 429, 400])
def test_llm_failure_apologises_and_requests_help(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any, status: int
) -> None:
    fake_llm.status = status
    data = send(client, admin, agent["id"], "hello?")
    assert data["reply"].startswith("Sorry") and data["help_requested"] is True
    session = client.get(f"/v1/chat/session/{data['session_id']}", headers=admin).json()["data"]
    assert session["help_reason"] == "llm_error"


def test_burst_is_answered_by_one_call_that_sees_every_message(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    release = threading.Event()

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if len(fake_llm.requests) == 1:
            release.wait(10)
        return completion("answer to: " + " | ".join(m["content"] for m in body["messages"] if m["role"] == "user"))

    fake_llm.handler = handler
    first = send(client, admin, agent["id"], "one", wait=0)
    eventually(lambda: len(fake_llm.requests) == 1)
    for text in ("two", "three", "four"):
        send(client, admin, agent["id"], text, wait=0)
    release.set()
    sid = first["session_id"]
    eventually(lambda: any(m["role"] == "agent" and not m.get("private") for m in thread(client, admin, sid)))
    eventually(lambda: not sessions_pending(client, admin))
    assert fake_llm.max_in_flight == 1
    assert len(fake_llm.requests) == 2
    users = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "user"]
    assert users == ["one", "two", "three", "four"]
    public = thread(client, admin, sid, private=False)
    assert [(m["role"], m["text"]) for m in public] == [
        ("customer", "one"),
        ("customer", "two"),
        ("customer", "three"),
        ("customer", "four"),
        ("agent", "answer to: one | two | three | four"),
    ]
    draft = [m for m in thread(client, admin, sid) if m.get("kind") == "draft"]
    assert len(draft) == 1 and draft[0]["meta"] == {"suppressed": "newer_message"}


def sessions_pending(client: TestClient, headers: dict[str, str]) -> int:
    return int(client.get("/readyz").json()["data"]["turns_pending"])


def test_turns_of_different_sessions_run_in_parallel(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any
) -> None:
    both = threading.Barrier(2, timeout=10)

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        both.wait()
        return completion("hi " + last_user_text(body))

    fake_llm.handler = handler
    send(client, admin, agent["id"], "a", customer="x", wait=0)
    send(client, admin, agent["id"], "b", customer="y", wait=0)
    eventually(lambda: len(fake_llm.requests) == 2 and fake_llm.in_flight == 0)
    assert fake_llm.max_in_flight == 2


def test_takeover_during_llm_call_suppresses_the_reply(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, workers: Any, store: Store
) -> None:
    release = threading.Event()

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        release.wait(10)
        return completion("AI answer")

    fake_llm.handler = handler
    sid = send(client, admin, agent["id"], "help", wait=0)["session_id"]
    eventually(lambda: len(fake_llm.requests) == 1)
    store.run(sessions.commit(sid, Change(set={"mode": "support", "active_human": "alice@example.com"})))
    release.set()
    eventually(lambda: any(m.get("kind") == "draft" for m in thread(client, admin, sid)))
    public = thread(client, admin, sid, private=False)
    assert [m["role"] for m in public] == ["customer"]
    draft = next(m for m in thread(client, admin, sid) if m.get("kind") == "draft")
    assert draft["text"] == "AI answer" and draft["meta"] == {"suppressed": "takeover"}


def test_inbound_in_support_mode_returns_null_reply_without_waiting(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], fake_llm: FakeLLM, store: Store
) -> None:
    s = client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c1"}, headers=admin).json()[
        "data"
    ]
    store.run(sessions.commit(s["id"], Change(set={"mode": "support", "active_human": "alice@example.com"})))
    data = send(client, admin, agent["id"], "anyone?")
    assert data == {
        "session_id": s["id"],
        "reply": None,
        "state": "default",
        "mode": "support",
        "help_requested": False,
    }
    assert fake_llm.requests == []
