"""Operator commands (SPEC §5) against the real app, Redis and workers; the LLM mocked with respx."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core.store import Change, sessions
from tests.conftest import drain
from tests.fakes import FakeLLM, completion
from tests.helpers import eventually, send, thread


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


def make_agent(client: TestClient, admin: dict[str, str], **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/agents", json={"name": "Acme", **extra}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def open_session(client: TestClient, h: dict[str, str], agent_id: str, customer: str = "c1") -> str:
    return client.post("/v1/chat/session", json={"agent_uuid": agent_id, "customer_id": customer}, headers=h).json()[
        "data"
    ]["id"]  # type: ignore[no-any-return]


def cmd(client: TestClient, h: dict[str, str], sid: str, command: str | None = None, message: str | None = None) -> Any:
    body: dict[str, Any] = {}
    if command is not None:
        body["command"] = command
    if message is not None:
        body["message"] = message
    return client.post(f"/v1/chat/session/{sid}/support", json=body, headers=h)


def session(client: TestClient, h: dict[str, str], sid: str) -> dict[str, Any]:
    return client.get(f"/v1/chat/session/{sid}", headers=h).json()["data"]  # type: ignore[no-any-return]


def test_takeover_sets_support_mode_and_clears_help(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    agent = make_agent(client, admin)
    sid = send(client, admin, agent["id"], "I want a human")["session_id"]
    assert session(client, admin, sid)["help_requested"] is True
    r = cmd(client, operator, sid, "takeover", "Hi, Alice here. How can I help?")
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "data": {"state": "ok", "session_id": sid, "command": "takeover", "active_human": "alice@example.com"},
    }
    s = session(client, admin, sid)
    assert (s["mode"], s["active_human"], s["help_requested"]) == ("support", "alice@example.com", False)
    items = thread(client, admin, sid)
    record = next(m for m in items if m.get("kind") == "command")
    assert record["author"] == "alice@example.com" and record["meta"] == {"command": "takeover"} and record["private"]
    op = [m for m in items if m["role"] == "operator"]
    assert [(m["text"], m["author"]) for m in op] == [("Hi, Alice here. How can I help?", "alice@example.com")]
    stats = client.get(f"/v1/chat/stats?agent_uuid={agent['id']}", headers=admin).json()["data"]
    assert stats["support"] == 1 and stats["help_requested"] == 0


def test_tell_delivers_verbatim_and_keeps_ai_in_charge(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    agent = make_agent(client, admin)
    sid = send(client, admin, agent["id"], "hello")["session_id"]
    r = cmd(client, operator, sid, "tell", "Your refund was approved.")
    assert r.json()["data"] == {
        "state": "ok",
        "session_id": sid,
        "command": "tell",
        "reply": "Your refund was approved.",
    }
    assert session(client, admin, sid)["mode"] == "ai"
    send(client, admin, agent["id"], "thanks")
    history = fake_llm.requests[-1]["messages"]
    assert {
        "role": "assistant",
        "content": "[Sent by human operator alice@example.com] Your refund was approved.",
    } in history


def test_whisper_reaches_the_next_prompt_and_never_the_customer(
    client: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    api: dict[str, str],
    fake_llm: FakeLLM,
    workers: Any,
) -> None:
    agent = make_agent(client, admin, webhook={"url": "https://hooks.test/events", "secret": "whsec_test_123"})
    sid = send(client, admin, agent["id"], "hello")["session_id"]
    secret = "Offer the 20% loyalty discount"
    r = cmd(client, operator, sid, "whisper", secret)
    assert r.json()["data"] == {"state": "ok", "session_id": sid, "command": "whisper"}
    send(client, admin, agent["id"], "any deals?")
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert "Private guidance from a human operator" in system and secret in system
    public = client.get(f"/v1/chat/session/{sid}/messages?limit=200", headers=api).text
    assert secret not in public
    assert secret not in client.get(f"/v1/chat/session/{sid}", headers=api).text
    assert secret not in client.get("/v1/chat/session/active?customer_id=c1", headers=api).text
    import redis

    from tests.conftest import ROOT  # noqa: F401  (keeps the import graph honest in this module)

    outbox = redis.Redis.from_url(client.app.state.settings.redis.url, decode_responses=True).lrange("gw:outbox", 0, -1)  # type: ignore[attr-defined]
    assert outbox and all(secret not in e for e in outbox)
    assert any(m["role"] == "whisper" and m["text"] == secret for m in thread(client, operator, sid))


def test_whisper_with_unanswered_message_runs_a_turn_now(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, ctx: Any, store: Any
) -> None:

    agent = make_agent(client, admin)
    sid = open_session(client, admin, agent["id"])
    store.run(sessions.commit(sid, Change(set={"mode": "support", "active_human": "bob"})))
    send(client, admin, agent["id"], "hello?", wait=0)
    drain(ctx)
    assert fake_llm.requests == []
    cmd(client, operator, sid, "end")
    drain(ctx)
    assert len(fake_llm.requests) == 1
    system = fake_llm.requests[0]["messages"]
    assert {
        "role": "system",
        "content": "A human operator handed the conversation back to you. Continue helping the customer from here.",
    } in system
    assert [m["role"] for m in thread(client, admin, sid, private=False)][-1] == "agent"
    fake_llm.requests.clear()
    store.run(sessions.commit(sid, Change(set={"mode": "support"})))
    send(client, admin, agent["id"], "still there?", wait=0)
    store.run(sessions.commit(sid, Change(set={"mode": "ai"})))
    cmd(client, operator, sid, "whisper", "be brief")
    drain(ctx)
    assert len(fake_llm.requests) == 1 and "be brief" in fake_llm.requests[0]["messages"][0]["content"]


def test_takeover_during_slow_llm_then_end_answers_the_pending_message(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    release = threading.Event()

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if len(fake_llm.requests) == 1:
            release.wait(10)
        return completion("AI: " + body["messages"][-1]["content"])

    fake_llm.handler = handler
    agent = make_agent(client, admin)
    sid = send(client, admin, agent["id"], "where is my order?", wait=0)["session_id"]
    eventually(lambda: len(fake_llm.requests) == 1)
    assert cmd(client, operator, sid, "takeover").status_code == 200
    release.set()
    eventually(lambda: any(m.get("kind") == "draft" for m in thread(client, admin, sid)))
    assert [m["role"] for m in thread(client, admin, sid, private=False)] == ["customer"]
    cmd(client, operator, sid, "end")
    eventually(lambda: [m["role"] for m in thread(client, admin, sid, private=False)] == ["customer", "agent"])
    assert len(fake_llm.requests) == 2


def test_plain_message_only_in_support_mode(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    agent = make_agent(client, admin)
    sid = open_session(client, admin, agent["id"])
    before = thread(client, admin, sid)
    r = cmd(client, operator, sid, None, "hello")
    assert r.status_code == 422
    assert r.json()["errors"] == [
        "command: a plain operator message needs support mode; send 'takeover' first, or use 'tell'"
    ]
    assert thread(client, admin, sid) == before
    cmd(client, operator, sid, "takeover")
    r = cmd(client, operator, sid, None, "I'm here")
    assert r.json()["data"] == {"state": "ok", "session_id": sid, "command": None, "reply": "I'm here"}
    assert [m["author"] for m in thread(client, admin, sid) if m["role"] == "operator"] == ["alice@example.com"]


@pytest.mark.parametrize("command", ["whisper", "tell", "takeover"])
def test_disabled_commands_are_422(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], command: str
) -> None:
    agent = make_agent(client, admin, support_commands={command: False})
    sid = open_session(client, admin, agent["id"])
    r = cmd(client, operator, sid, command, "x")
    assert r.status_code == 422 and r.json()["errors"] == [f"command: '{command}' is disabled for this agent"]


def test_commands_on_closed_session_and_bad_input(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    agent = make_agent(client, admin)
    sid = open_session(client, admin, agent["id"])
    assert cmd(client, operator, sid, "close").json()["data"] == {"state": "ok", "session_id": sid, "command": "close"}
    s = session(client, admin, sid)
    assert s["status"] == "closed" and s["closed_reason"] == "closed_by_operator"
    for command in ("takeover", "tell", "whisper", "end", "close", "resolve"):
        r = cmd(client, operator, sid, command, "x")
        assert r.status_code == 422 and r.json()["errors"] == [f"session_id: session '{sid}' is closed"]
    sid2 = open_session(client, admin, agent["id"], customer="c2")
    r = cmd(client, operator, sid2, "explode")
    assert r.status_code == 422 and r.json()["errors"][0].startswith("command: Input should be 'takeover', 'tell'")
    for command in ("tell", "whisper"):
        r = cmd(client, operator, sid2, command, "  ")
        assert r.json()["errors"] == [f"message: '{command}' needs a non-empty message"]
    assert cmd(client, operator, "00000000-0000-4000-8000-000000000009", "takeover").status_code == 404


def test_resolve_clears_help_without_takeover(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    agent = make_agent(client, admin)
    sid = send(client, admin, agent["id"], "get me a real person")["session_id"]
    listed = client.get(f"/v1/chat/sessions?help_requested=true&agent_uuid={agent['id']}", headers=operator).json()[
        "data"
    ]["items"]
    assert [s["id"] for s in listed] == [sid]
    cmd(client, operator, sid, "resolve")
    s = session(client, admin, sid)
    assert s["help_requested"] is False and s["mode"] == "ai"
    assert (
        client.get(f"/v1/chat/sessions?help_requested=true&agent_uuid={agent['id']}", headers=operator).json()["data"][
            "items"
        ]
        == []
    )


def test_hold_agent_goes_silent_after_saying_a_person_will_reply(
    client: TestClient, admin: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    agent = make_agent(client, admin, on_help_requested="hold")
    first = send(client, admin, agent["id"], "I need an operator please")
    assert first["help_requested"] is True
    assert first["reply"] == "Thanks — I've asked a member of our team to join. A person will reply here shortly."
    second = send(client, admin, agent["id"], "hello??")
    assert second["reply"] is None and second["help_requested"] is True
    assert len(fake_llm.requests) == 1


def test_close_produces_a_summary_that_feeds_memory(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if "Summarize this customer conversation" in body["messages"][0]["content"]:
            return completion("Customer asked about order 42; it ships Friday.")
        return completion("ok")

    fake_llm.handler = handler
    agent = make_agent(client, admin)
    sid = send(client, admin, agent["id"], "where is order 42")["session_id"]
    r = cmd(client, operator, sid, "close")
    assert r.status_code == 200
    eventually(lambda: session(client, admin, sid)["summary"] == "Customer asked about order 42; it ships Friday.")
    send(client, admin, agent["id"], "me again")
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert "From earlier conversations with this customer:\n- Customer asked about order 42; it ships Friday." in system
