"""Customer memory and erasure: nothing of the customer is left in Redis afterwards."""

from __future__ import annotations

from typing import Any

import redis
from starlette.testclient import TestClient

from agent_core import lifecycle
from agent_core.store import Store
from tests.agent_core.test_counters import assert_consistent
from tests.conftest import drain
from workers import jobs

CUSTOMER = "+15557650000"


def test_memory_is_used_when_enabled_and_absent_when_disabled(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], ctx: Any, store: Store
) -> None:
    on = client.post("/v1/agents", json={"name": "On"}, headers=admin).json()["data"]
    off = client.post("/v1/agents", json={"name": "Off", "memory": {"enabled": False}}, headers=admin).json()["data"]
    for agent in (on, off):
        sid = client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent["id"], "customer_id": CUSTOMER, "content": "my parcel 55 never came"},
            headers=admin,
        ).json()["data"]["session_id"]
        drain(ctx)
        client.post(f"/v1/chat/session/{sid}/support", json={"command": "close"}, headers=operator)
        drain(ctx)
    mem = client.get(f"/v1/customers/{CUSTOMER}/memory?agent_uuid={on['id']}", headers=operator).json()["data"]
    assert mem["customer_id"] == CUSTOMER and len(mem["items"]) == 1
    assert "parcel 55" in mem["items"][0]["summary"] and mem["items"][0]["agent_id"] == on["id"]
    from agent_core.prompts import PromptInputs, build_messages  # noqa: F401
    from agent_core.store import agents, sessions

    for agent, expected in ((on, True), (off, False)):
        client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent["id"], "customer_id": CUSTOMER, "content": "hi"},
            headers=admin,
        )
        sid = store.run(sessions.open_session_id(agent["id"], CUSTOMER))
        session = store.run(sessions.get(sid))
        full = store.run(agents.get(agent["id"]))
        memory = ctx.turn_deps.memory_for(full, session) if full.memory.enabled else []
        assert bool(memory) is expected


def test_erase_leaves_nothing_of_the_customer_behind(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], ctx: Any, store: Store, redis_url: str
) -> None:
    agent = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    other = "+15550009999"
    for customer in (CUSTOMER, other):
        sid = client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent["id"], "customer_id": customer, "content": f"hello from {customer}"},
            headers=admin,
        ).json()["data"]["session_id"]
        drain(ctx)
    client.post(f"/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "note"}, headers=operator)
    first = client.get(
        f"/v1/chat/session/active?customer_id={CUSTOMER}&agent_uuid={agent['id']}", headers=admin
    ).json()["data"]["id"]
    client.post(f"/v1/chat/session/{first}/support", json={"command": "whisper", "message": "vip"}, headers=operator)
    client.post(f"/v1/chat/session/{first}/support", json={"command": "close"}, headers=operator)
    jobs.task_sweep()
    drain(ctx)
    client.post(
        "/v1/chat/inbound?wait=0",
        json={"agent_uuid": agent["id"], "customer_id": CUSTOMER, "content": "again"},
        headers=admin,
    )
    r = client.delete(f"/v1/customers/{CUSTOMER}", headers=admin)
    assert r.status_code == 200
    removed = r.json()["data"]["removed"]
    assert removed["sessions"] == 2 and removed["memory_entries"] == 1 and removed["messages"] >= 5
    raw = redis.Redis.from_url(redis_url)
    needles = (CUSTOMER.encode(), first.encode())
    leftovers = []
    readers = {
        "string": raw.get,
        "hash": raw.hgetall,
        "list": lambda k: raw.lrange(k, 0, -1),
        "set": raw.smembers,
        "zset": lambda k: raw.zrange(k, 0, -1),
    }
    for key in raw.scan_iter("*"):
        value = readers.get(raw.type(key).decode(), lambda k: b"")(key)
        blob = key + repr(value).encode()
        if any(n in key or n in blob or n in repr(value).encode() for n in needles):
            leftovers.append(key)
    assert leftovers == []
    stats = client.get("/v1/chat/stats", headers=admin).json()["data"]
    assert stats["total"] == 1
    assert_consistent(store, redis.Redis.from_url(redis_url, decode_responses=True))
    assert client.get(f"/v1/customers/{CUSTOMER}/memory", headers=admin).json()["data"]["items"] == []


def test_customer_endpoints_need_the_right_role(
    client: TestClient, operator: dict[str, str], api: dict[str, str]
) -> None:
    assert client.delete(f"/v1/customers/{CUSTOMER}", headers=operator).status_code == 403
    assert client.get(f"/v1/customers/{CUSTOMER}/memory", headers=api).status_code == 403
    assert client.get(f"/v1/customers/{CUSTOMER}/memory?agent_uuid=agent_nope", headers=operator).status_code == 404
    _ = lifecycle
