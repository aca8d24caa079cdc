"""Agents CRUD and the OSVI active_agents listing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

EXAMPLE = {
    "name": "Acme Support",
    "welcome_message": "Hi! How can I help?",
    "prompt": {"type": "single", "text": "You are Acme's support agent..."},
    "llm": {"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.3},
    "channels": {"numbers": ["+15550001111", "whatsapp:+15550001111"]},
    "escalation": {"enabled": True, "from_number": "+15550001111"},
    "lifecycle": {"dormant_after_s": 1800, "close_after_s": 86400},
    "support_commands": {"whisper": True, "tell": True, "takeover": True},
}


def test_spec_example_creates_agent_with_defaults_filled(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/agents", json=EXAMPLE, headers=admin)
    assert r.status_code == 200
    a = r.json()["data"]
    assert a["id"].startswith("agent_") and a["status"] == "active"
    assert a["llm"] == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "temperature": 0.3,
        "max_tokens": 512,
        "context_window": 16000,
    }
    assert a["knowledge"] == {"document_ids": [], "relevance_threshold": 0.3, "top_k": 3}
    assert a["memory"] == {"enabled": True, "max_items": 5}
    assert a["on_help_requested"] == "continue"
    assert a["escalation"]["enabled"] is True and a["escalation"]["max_call_s"] == 600
    assert a["tools"] == [] and a["webhook"] is None
    assert client.get(f"/v1/agents/{a['id']}", headers=admin).json()["data"] == a


def test_bad_agent_names_every_bad_field(client: TestClient, admin: dict[str, str]) -> None:
    body = {
        "name": "",
        "llm": {"temperature": 5},
        "channels": {"numbers": ["555"]},
        "prompt": {"type": "multi", "initial_state": "x", "states": [{"name": "a", "prompt": "p"}]},
        "colour": "blue",
    }
    r = client.post("/v1/agents", json=body, headers=admin)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert "name: String should have at least 1 character" in errors
    assert "llm.temperature: Input should be less than or equal to 2" in errors
    assert "channels.numbers: '555' is not an E.164 number (optionally prefixed with 'whatsapp:')" in errors
    assert "prompt.multi: initial_state 'x' is not one of the states" in errors
    assert "colour: unknown field" in errors
    assert client.get("/v1/agents", headers=admin).json()["data"]["items"] == []


def test_a_number_routes_to_one_agent_only(client: TestClient, admin: dict[str, str]) -> None:
    first = client.post("/v1/agents", json={"name": "A", "channels": {"numbers": ["+15550002222"]}}, headers=admin)
    r = client.post("/v1/agents", json={"name": "B", "channels": {"numbers": ["+15550002222"]}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["errors"] == [f"channels: '+15550002222' already routes to agent '{first.json()['data']['id']}'"]


def test_patch_merges_and_null_resets(client: TestClient, admin: dict[str, str]) -> None:
    a = client.post("/v1/agents", json=EXAMPLE, headers=admin).json()["data"]
    r = client.patch(
        f"/v1/agents/{a['id']}", json={"llm": {"temperature": 0.9}, "welcome_message": None}, headers=admin
    )
    assert r.status_code == 200
    b = r.json()["data"]
    assert b["llm"]["temperature"] == 0.9 and b["llm"]["model"] == "gpt-4o-mini"
    assert b["welcome_message"] is None
    assert b["created_at"] == a["created_at"] and b["chat_agent_id"] == a["chat_agent_id"]
    r = client.patch(f"/v1/agents/{a['id']}", json={"id": "agent_x", "llm": {"temperature": "hot"}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["errors"] == ["id: unknown field (or not changeable)"]
    r = client.patch(f"/v1/agents/{a['id']}", json={"llm": {"temperature": "hot"}}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"] == [
        "llm.temperature: Input should be a valid number, unable to parse string as a number"
    ]
    assert client.get(f"/v1/agents/{a['id']}", headers=admin).json()["data"] == b


def test_patch_moves_numbers_between_agents(client: TestClient, admin: dict[str, str]) -> None:
    a = client.post("/v1/agents", json={"name": "A", "channels": {"numbers": ["+15550003333"]}}, headers=admin).json()[
        "data"
    ]
    client.patch(f"/v1/agents/{a['id']}", json={"channels": {"numbers": []}}, headers=admin)
    r = client.post("/v1/agents", json={"name": "B", "channels": {"numbers": ["+15550003333"]}}, headers=admin)
    assert r.status_code == 200


def test_delete_archives_and_active_agents_is_a_bare_array(
    client: TestClient, admin: dict[str, str], api: dict[str, str]
) -> None:
    a = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    b = client.post("/v1/agents", json={"name": "B"}, headers=admin).json()["data"]
    assert client.get("/v1/active_agents", headers=api).json() == [
        {"agent_id": a["id"], "name": "A", "status": "active"},
        {"agent_id": b["id"], "name": "B", "status": "active"},
    ]
    r = client.delete(f"/v1/agents/{a['id']}", headers=admin)
    assert r.json()["data"]["status"] == "archived"
    assert client.get("/v1/active_agents", headers=api).json() == [
        {"agent_id": b["id"], "name": "B", "status": "active"}
    ]
    listed = client.get("/v1/agents?status=archived", headers=admin).json()["data"]["items"]
    assert [x["id"] for x in listed] == [a["id"]]


def test_agents_paginate(client: TestClient, admin: dict[str, str]) -> None:
    ids = [client.post("/v1/agents", json={"name": f"A{i}"}, headers=admin).json()["data"]["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        data = client.get("/v1/agents", params=params, headers=admin).json()["data"]
        seen += [a["id"] for a in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert client.get("/v1/agents?cursor=bogus", headers=admin).status_code == 422
    assert client.get("/v1/agents?limit=0", headers=admin).json()["errors"] == ["limit: must be between 1 and 200"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_agent_is_404(client: TestClient, admin: dict[str, str], method: str) -> None:
    r = client.request(method, "/v1/agents/agent_nope", headers=admin, json={} if method == "PATCH" else None)
    assert r.status_code == 404
    assert r.json() == {"success": False, "errors": ["agent_id: no agent with id 'agent_nope'"]}


def test_multi_prompt_agent_starts_sessions_in_its_initial_state(client: TestClient, admin: dict[str, str]) -> None:
    prompt = {
        "type": "multi",
        "initial_state": "greet",
        "states": [
            {"name": "greet", "prompt": "Greet.", "transitions": [{"to": "help", "when": "customer states a need"}]},
            {"name": "help", "prompt": "Help."},
        ],
    }
    a = client.post("/v1/agents", json={"name": "M", "prompt": prompt}, headers=admin).json()["data"]
    s = client.post("/v1/chat/session", json={"agent_uuid": a["id"], "customer_id": "c"}, headers=admin).json()["data"]
    assert s["current_state"] == "greet"
