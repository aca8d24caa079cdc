"""The OSVI-compatible Chat v1 endpoints (SPEC §6.1) against the real app, Redis and workers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.api.schemas import InboundResult, SessionDetail
from tests.conftest import drain

OSVI_SESSION_FIELDS = {
    "id",
    "chat_agent_id",
    "account_id",
    "customer_id",
    "mode",
    "help_requested",
    "status",
    "current_state",
    "metadata",
    "active_human",
    "created_at",
    "updated_at",
}
OUR_SESSION_FIELDS = {
    "delivery_error",
    "agent_id",
    "channel",
    "customer_address",
    "last_customer_message_at",
    "last_activity_at",
    "help_requested_at",
    "help_reason",
    "summary",
    "closed_reason",
    "opted_out",
}


@pytest.fixture
def agent(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    r = client.post("/v1/agents", json={"name": "Acme", "welcome_message": "Hi! How can I help?"}, headers=admin)
    assert r.status_code == 200
    return r.json()["data"]  # type: ignore[no-any-return]


def new_session(
    client: TestClient, headers: dict[str, str], agent_id: str, customer: str = "cust-1", **extra: Any
) -> dict[str, Any]:
    r = client.post(
        "/v1/chat/session", json={"agent_uuid": agent_id, "customer_id": customer, **extra}, headers=headers
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]  # type: ignore[no-any-return]


def test_session_object_has_osvi_fields_exactly_plus_ours(
    client: TestClient, api: dict[str, str], agent: dict[str, Any]
) -> None:
    s = new_session(client, api, agent["id"], input_fields={"name": "Bo"})
    assert set(s) == OSVI_SESSION_FIELDS | OUR_SESSION_FIELDS
    assert s["chat_agent_id"] == agent["chat_agent_id"] and isinstance(s["chat_agent_id"], int)
    assert s["account_id"] == 1
    assert s["mode"] == "ai" and s["status"] == "active" and s["help_requested"] is False
    assert s["metadata"] == {"input_fields": {"name": "Bo"}, "state_fields": {}, "context": []}
    assert s["active_human"] is None
    assert s["created_at"].endswith("Z") and s["updated_at"].endswith("Z")
    assert s["agent_id"] == agent["id"] and s["channel"] == "api"
    SessionDetail.model_validate(s)


def test_second_session_closes_the_first(client: TestClient, api: dict[str, str], agent: dict[str, Any]) -> None:
    first = new_session(client, api, agent["id"])
    second = new_session(client, api, agent["id"])
    assert first["id"] != second["id"]
    old = client.get(f"/v1/chat/session/{first['id']}", headers=api).json()["data"]
    assert old["status"] == "closed" and old["closed_reason"] == "replaced"
    active = client.get(
        "/v1/chat/session/active", params={"customer_id": "cust-1", "agent_uuid": agent["id"]}, headers=api
    )
    assert active.json()["data"]["id"] == second["id"]


def test_a_replaced_session_gets_its_summary_from_the_job_its_replacement_queued(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], ctx: Any
) -> None:
    first = new_session(client, api, agent["id"])
    r = client.post(
        "/v1/chat/inbound?wait=0",
        json={"agent_uuid": agent["id"], "customer_id": "cust-1", "content": "my order 12 is late"},
        headers=api,
    )
    assert r.status_code in (200, 202), r.text
    drain(ctx)
    new_session(client, api, agent["id"])
    drain(ctx)
    old = client.get(f"/v1/chat/session/{first['id']}", headers=api).json()["data"]
    assert old["closed_reason"] == "replaced" and old["summary"]


def test_context_keeps_five_newest_non_empty(client: TestClient, api: dict[str, str], agent: dict[str, Any]) -> None:
    s = new_session(client, api, agent["id"], context=["a", "b", "  ", "c", "", "d", "e", "f"])
    assert s["metadata"]["context"] == ["b", "c", "d", "e", "f"]
    r = client.post(f"/v1/chat/session/{s['id']}/inject_context", json={"context": "g"}, headers=api)
    assert r.json() == {"success": True, "data": {"session_id": s["id"], "context": ["c", "d", "e", "f", "g"]}}
    r = client.post(f"/v1/chat/session/{s['id']}/inject_context", json={"context": "   "}, headers=api)
    assert r.status_code == 422 and r.json()["errors"] == ["context: must not be empty"]


def test_inject_context_records_a_private_context_message(
    client: TestClient, operator: dict[str, str], api: dict[str, str], agent: dict[str, Any]
) -> None:
    s = new_session(client, api, agent["id"])
    client.post(f"/v1/chat/session/{s['id']}/inject_context", json={"context": "VIP customer"}, headers=api)
    public = client.get(f"/v1/chat/session/{s['id']}/messages", headers=api).json()["data"]["items"]
    assert [m["role"] for m in public] == ["agent"]  # the welcome message only
    private = client.get(f"/v1/chat/session/{s['id']}/messages?include_private=1", headers=operator).json()["data"][
        "items"
    ]
    assert [(m["role"], m["text"]) for m in private][-1] == ("context", "VIP customer")


def test_inject_context_on_closed_session_is_422_and_changes_nothing(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], operator: dict[str, str]
) -> None:
    first = new_session(client, api, agent["id"])
    new_session(client, api, agent["id"])
    before = client.get(f"/v1/chat/session/{first['id']}/messages?include_private=1", headers=operator).json()
    r = client.post(f"/v1/chat/session/{first['id']}/inject_context", json={"context": "late"}, headers=api)
    assert r.status_code == 422
    assert r.json() == {"success": False, "errors": [f"session_id: session '{first['id']}' is closed"]}
    after = client.get(f"/v1/chat/session/{first['id']}/messages?include_private=1", headers=operator).json()
    assert before == after


def test_inbound_returns_the_reply_in_osvi_shape(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], workers: Any
) -> None:
    r = client.post(
        "/v1/chat/inbound",
        json={"agent_uuid": agent["id"], "customer_id": "c9", "content": "Where is my parcel?"},
        headers=api,
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {"session_id", "reply", "state", "mode", "help_requested"}
    assert "Where is my parcel?" in data["reply"]
    assert data["state"] == "default" and data["mode"] == "ai" and data["help_requested"] is False
    InboundResult.model_validate(data)
    msgs = client.get(f"/v1/chat/session/{data['session_id']}/messages", headers=api).json()["data"]["items"]
    assert [(m["role"], m["seq"]) for m in msgs] == [("customer", 1), ("agent", 2)]
    assert msgs[1]["in_reply_to"] == 1


def test_inbound_wait_zero_is_202_pending_and_reply_lands_in_history(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], ctx: Any
) -> None:
    from tests.conftest import drain

    r = client.post(
        "/v1/chat/inbound?wait=0",
        json={"agent_uuid": agent["id"], "customer_id": "c2", "content": "hello"},
        headers=api,
    )
    assert r.status_code == 202
    data = r.json()["data"]
    assert data["reply"] is None and data["pending"] is True
    drain(ctx)
    msgs = client.get(f"/v1/chat/session/{data['session_id']}/messages", headers=api).json()["data"]["items"]
    assert [m["role"] for m in msgs] == ["customer", "agent"]


def test_inbound_resumes_the_open_session_and_given_session_id(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], workers: Any
) -> None:
    s = new_session(client, api, agent["id"], customer="c3")
    body = {"agent_uuid": agent["id"], "customer_id": "c3", "content": "one"}
    assert client.post("/v1/chat/inbound", json=body, headers=api).json()["data"]["session_id"] == s["id"]
    body["session_id"] = s["id"]
    assert client.post("/v1/chat/inbound", json=body, headers=api).json()["data"]["session_id"] == s["id"]


def test_inbound_on_a_closed_session_id_starts_a_new_session(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], workers: Any
) -> None:
    old = new_session(client, api, agent["id"], customer="c4")
    new = new_session(client, api, agent["id"], customer="c4")
    r = client.post(
        "/v1/chat/inbound",
        json={"agent_uuid": agent["id"], "customer_id": "c4", "content": "hi", "session_id": old["id"]},
        headers=api,
    )
    assert r.json()["data"]["session_id"] == new["id"]


def test_idempotency_key_stores_one_message_and_returns_the_same_reply(
    client: TestClient, api: dict[str, str], agent: dict[str, Any], workers: Any
) -> None:
    body = {"agent_uuid": agent["id"], "customer_id": "c5", "content": "once"}
    h = {**api, "Idempotency-Key": "k-1"}
    first = client.post("/v1/chat/inbound", json=body, headers=h).json()["data"]
    again = client.post("/v1/chat/inbound", json=body, headers=h).json()["data"]
    assert first == again
    msgs = client.get(f"/v1/chat/session/{first['session_id']}/messages", headers=api).json()["data"]["items"]
    assert [m["role"] for m in msgs] == ["customer", "agent"]


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        ({"customer_id": "c", "content": "x"}, 422, ["agent_uuid: Field required"]),
        (
            {"agent_uuid": "agent_nope", "customer_id": "c", "content": "x"},
            404,
            ["agent_uuid: no agent with id 'agent_nope'"],
        ),
        (
            {"agent_uuid": "A", "customer_id": "", "content": ""},
            422,
            ["customer_id: must not be empty", "content: must not be empty"],
        ),
        (
            {"agent_uuid": "A", "customer_id": "c", "content": "x", "session_id": "nope"},
            422,
            ["session_id: must be a session id (UUID)"],
        ),
        (
            {
                "agent_uuid": "A",
                "customer_id": "c",
                "content": "x",
                "session_id": "00000000-0000-4000-8000-000000000001",
            },
            404,
            ["session_id: no session with id '00000000-0000-4000-8000-000000000001'"],
        ),
        (
            {"agent_uuid": "A", "customer_id": "c\n", "content": "x"},
            422,
            ["customer_id: must not contain control characters"],
        ),
        ({"agent_uuid": "A", "customer_id": "c", "content": 5}, 422, ["content: Input should be a valid string"]),
    ],
)
def test_inbound_rejects_bad_input_and_stores_nothing(
    client: TestClient,
    api: dict[str, str],
    agent: dict[str, Any],
    redis_url: str,
    body: dict[str, Any],
    status: int,
    errors: list[str],
) -> None:
    import redis

    body = {k: (agent["id"] if v == "A" else v) for k, v in body.items()}
    r = client.post("/v1/chat/inbound", json=body, headers=api)
    assert r.status_code == status
    assert r.json() == {"success": False, "errors": errors}
    assert redis.Redis.from_url(redis_url).keys("gw:s:*") == []


def test_inbound_with_someone_elses_session_is_422(
    client: TestClient, api: dict[str, str], agent: dict[str, Any]
) -> None:
    s = new_session(client, api, agent["id"], customer="owner")
    r = client.post(
        "/v1/chat/inbound",
        json={"agent_uuid": agent["id"], "customer_id": "intruder", "content": "x", "session_id": s["id"]},
        headers=api,
    )
    assert r.status_code == 422
    assert "belongs to another agent or customer" in r.json()["errors"][0]


@pytest.mark.parametrize(
    ("raw", "ctype", "error"),
    [
        (
            b"{not json",
            "application/json",
            "body: invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes",
        ),
        (b"\xff\xfe{}", "application/json", "body: not valid UTF-8 (byte 0)"),
        (b"[1,2]", "application/json", "body: must be a JSON object"),
        (b"", "application/json", "body: a JSON object is required"),
        (
            b"a=b",
            "application/x-www-form-urlencoded",
            "body: expected Content-Type application/json, got 'application/x-www-form-urlencoded'",
        ),
    ],
)
def test_malformed_bodies_get_422_naming_the_problem(
    client: TestClient, api: dict[str, str], raw: bytes, ctype: str, error: str
) -> None:
    r = client.post("/v1/chat/inbound", content=raw, headers={**api, "Content-Type": ctype})
    assert r.status_code == 422
    assert r.json() == {"success": False, "errors": [error]}


def test_body_over_max_body_bytes_is_413(client: TestClient, api: dict[str, str], agent: dict[str, Any]) -> None:
    big = "x" * (1024 * 1024 + 10)
    r = client.post(
        "/v1/chat/inbound", json={"agent_uuid": agent["id"], "customer_id": "c", "content": big}, headers=api
    )
    assert r.status_code == 413
    assert r.json()["success"] is False


def test_active_without_agent_is_keyed_by_agent(
    client: TestClient, api: dict[str, str], admin: dict[str, str], agent: dict[str, Any]
) -> None:
    other = client.post("/v1/agents", json={"name": "Other"}, headers=admin).json()["data"]
    assert client.get("/v1/chat/session/active?customer_id=zed", headers=api).json() == {"success": True, "data": {}}
    a = new_session(client, api, agent["id"], customer="zed")
    b = new_session(client, api, other["id"], customer="zed")
    data = client.get("/v1/chat/session/active?customer_id=zed", headers=api).json()["data"]
    assert {k: v["id"] for k, v in data.items()} == {agent["id"]: a["id"], other["id"]: b["id"]}


def test_active_errors(client: TestClient, api: dict[str, str], agent: dict[str, Any]) -> None:
    r = client.get("/v1/chat/session/active", headers=api)
    assert r.status_code == 422 and r.json()["errors"] == ["customer_id: query parameter is required"]
    r = client.get(f"/v1/chat/session/active?customer_id=nobody&agent_uuid={agent['id']}", headers=api)
    assert r.status_code == 404
    r = client.get("/v1/chat/session/active?customer_id=x&agent_uuid=agent_zzz", headers=api)
    assert r.status_code == 404 and r.json()["errors"] == ["agent_uuid: no agent with id 'agent_zzz'"]


def test_create_session_errors(
    client: TestClient, api: dict[str, str], admin: dict[str, str], agent: dict[str, Any]
) -> None:
    r = client.post("/v1/chat/session", json={"agent_uuid": "agent_missing", "customer_id": "c"}, headers=api)
    assert r.status_code == 404
    r = client.post("/v1/chat/session", json={"agent_uuid": agent["id"]}, headers=api)
    assert r.status_code == 422 and r.json()["errors"] == ["customer_id: Field required"]
    r = client.post(
        "/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c", "context": "notalist"}, headers=api
    )
    assert r.status_code == 422 and r.json()["errors"][0].startswith("context: ")
    client.delete(f"/v1/agents/{agent['id']}", headers=admin)
    r = client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=api)
    assert r.status_code == 422 and "archived" in r.json()["errors"][0]


def test_numeric_customer_id_is_the_same_customer_as_its_text(
    client: TestClient, api: dict[str, str], agent: dict[str, Any]
) -> None:
    s = new_session(client, api, agent["id"], customer=42)  # type: ignore[arg-type]
    assert s["customer_id"] == "42"
    found = client.get(f"/v1/chat/session/active?customer_id=42&agent_uuid={agent['id']}", headers=api).json()["data"]
    assert found["id"] == s["id"]


def test_welcome_message_opens_the_thread(client: TestClient, api: dict[str, str], agent: dict[str, Any]) -> None:
    s = new_session(client, api, agent["id"])
    items = client.get(f"/v1/chat/session/{s['id']}/messages", headers=api).json()["data"]["items"]
    assert [(m["role"], m["text"], m["seq"]) for m in items] == [("agent", "Hi! How can I help?", 1)]


def test_unknown_session_paths_are_404(client: TestClient, api: dict[str, str]) -> None:
    for path in ("/v1/chat/session/nope", "/v1/chat/session/nope/messages"):
        r = client.get(path, headers=api)
        assert r.status_code == 404 and r.json() == {
            "success": False,
            "errors": ["session_id: no session with id 'nope'"],
        }
    r = client.post("/v1/chat/session/nope/inject_context", json={"context": "x"}, headers=api)
    assert r.status_code == 404


def test_sessions_pages_with_its_cursor_and_refuses_a_forged_one(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any]
) -> None:
    for customer in ("c1", "c2"):
        client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": customer}, headers=admin)
    first = client.get("/v1/chat/sessions", params={"limit": 1}, headers=admin).json()["data"]
    rest = client.get("/v1/chat/sessions", params={"cursor": first["next_cursor"]}, headers=admin).json()["data"]
    assert {s["customer_id"] for s in first["items"] + rest["items"]} == {"c1", "c2"}
    # Scores Python's float() reads and Redis does not (they reached Redis and were a 500).
    for score in ("nan", "1_0", " 1", "infinity"):
        cursor = base64.urlsafe_b64encode(f"{score}|x".encode()).decode().rstrip("=")
        r = client.get("/v1/chat/sessions", params={"cursor": cursor}, headers=admin)
        assert r.status_code == 422 and r.json()["errors"] == ["cursor: not a cursor this API issued"]
