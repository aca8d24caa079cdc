"""Tokens and roles: API-Token or Bearer; 401 without/with a bad token; 403 for the wrong role."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient


def test_missing_and_invalid_tokens_are_401(client: TestClient) -> None:
    r = client.get("/v1/chat/stats")
    assert r.status_code == 401
    assert r.json() == {
        "success": False,
        "errors": ["missing API token: send an 'API-Token' header (or 'Authorization: Bearer')"],
    }
    r = client.get("/v1/chat/stats", headers={"API-Token": "cgw_wrong"})
    assert r.status_code == 401 and r.json()["errors"] == ["invalid API token"]


def test_bearer_header_works_like_api_token(client: TestClient, tokens_by_role: dict[str, str]) -> None:
    r = client.get("/v1/chat/stats", headers={"Authorization": f"Bearer {tokens_by_role['operator']}"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("api", "GET", "/v1/chat/stats", 403),
        ("api", "GET", "/v1/chat/sessions", 403),
        ("api", "POST", "/v1/agents", 403),
        ("operator", "POST", "/v1/agents", 403),
        ("operator", "GET", "/v1/chat/sessions", 200),
        ("api", "GET", "/v1/active_agents", 200),
        ("admin", "GET", "/v1/chat/sessions", 200),
    ],
)
def test_roles(
    client: TestClient, tokens_by_role: dict[str, str], role: str, method: str, path: str, status: int
) -> None:
    r = client.request(
        method, path, headers={"API-Token": tokens_by_role[role]}, json={"name": "x"} if method == "POST" else None
    )
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["errors"][0].startswith(f"this token's role '{role}' may not do that")


def test_api_role_cannot_read_private_messages(client: TestClient, admin: dict[str, str], api: dict[str, str]) -> None:
    a = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    s = client.post("/v1/chat/session", json={"agent_uuid": a["id"], "customer_id": "c"}, headers=api).json()["data"]
    r = client.get(f"/v1/chat/session/{s['id']}/messages?include_private=1", headers=api)
    assert r.status_code == 403 and r.json()["errors"] == ["include_private: needs an operator or admin token"]


def test_revoked_token_stops_working(client: TestClient, store: object, tokens_by_role: dict[str, str]) -> None:
    from agent_core.store import Store, tokens

    assert isinstance(store, Store)
    token, record = store.run(tokens.create("temp", tokens.TokenRole.operator))
    assert client.get("/v1/chat/stats", headers={"API-Token": token}).status_code == 200
    assert [r.id for r in store.run(tokens.revoke(record.id))] == [record.id]
    assert client.get("/v1/chat/stats", headers={"API-Token": token}).status_code == 401


def test_tokens_are_stored_hashed(store: object, redis_url: str) -> None:
    import redis

    from agent_core.store import Store, tokens

    assert isinstance(store, Store)
    token, _ = store.run(tokens.create("x", tokens.TokenRole.admin))
    dump = b"".join(
        (k + (redis.Redis.from_url(redis_url).dump(k) or b"")) for k in redis.Redis.from_url(redis_url).keys("*")
    )
    assert token.encode() not in dump
