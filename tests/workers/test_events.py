"""Events out (SPEC §11): signed, retried with backoff, at least once, stable event ids."""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx
from starlette.testclient import TestClient

from agent_core.events import verify_signature
from tests.conftest import drain
from workers import jobs

HOOK = "https://hooks.example.com/chat"
SECRET = "whsec_0123456789"


def make_agent(client: TestClient, admin: dict[str, str], **hook: Any) -> dict[str, Any]:
    webhook = {"url": HOOK, "secret": SECRET, **hook}
    return client.post("/v1/agents", json={"name": "A", "webhook": webhook}, headers=admin).json()["data"]  # type: ignore[no-any-return]


def test_events_are_signed_and_describe_the_conversation(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], ctx: Any
) -> None:
    agent = make_agent(client, admin)
    received: list[httpx.Request] = []
    with respx.mock(assert_all_called=False) as router:
        router.post(HOOK).mock(side_effect=lambda req: received.append(req) or httpx.Response(204))
        sid = client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent["id"], "customer_id": "c", "content": "I want a human"},
            headers=admin,
        ).json()["data"]["session_id"]
        drain(ctx)
        client.post(f"/v1/chat/session/{sid}/support", json={"command": "takeover", "message": "hi"}, headers=operator)
        client.post(
            f"/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "secret tip"}, headers=operator
        )
        client.post(f"/v1/chat/session/{sid}/support", json={"command": "close"}, headers=operator)
        assert jobs.pump_events() > 0
        drain(ctx)
    events = [json.loads(r.content) for r in received]
    types = [e["type"] for e in events]
    assert types[:2] == ["session.created", "message.created"]
    assert "session.help_requested" in types and "session.mode_changed" in types and "session.status_changed" in types
    authors = [e["data"]["role"] for e in events if e["type"] == "message.created"]
    assert authors == ["customer", "agent", "operator"]
    assert all("secret tip" not in r.content.decode() for r in received)
    for req in received:
        assert verify_signature(SECRET, req.content, req.headers["X-Signature"])
        assert req.headers["X-Event-Id"] == json.loads(req.content)["event_id"]
        assert not verify_signature("wrong-secret", req.content, req.headers["X-Signature"])
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(e["session_id"] == sid and e["agent_id"] == agent["id"] for e in events)


def test_a_failing_receiver_gets_retries_and_no_duplicate_event_ids(
    client: TestClient, admin: dict[str, str], ctx: Any
) -> None:
    from tests.gateway.test_twilio import run_scheduled

    agent = make_agent(client, admin, events=["session.created"])
    calls: list[str] = []

    def receiver(req: httpx.Request) -> httpx.Response:
        calls.append(json.loads(req.content)["event_id"])
        return httpx.Response(500 if len(calls) == 1 else 200)

    with respx.mock(assert_all_called=False) as router:
        router.post(HOOK).mock(side_effect=receiver)
        client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=admin)
        jobs.pump_events()
        drain(ctx)
        assert len(calls) == 1
        scheduled = ctx.rq_redis.zcard("rq:scheduled:events")
        assert scheduled == 1
        run_scheduled(ctx)
        assert len(calls) == 2 and calls[0] == calls[1]
        run_scheduled(ctx)
        assert len(calls) == 2


def test_an_unreachable_receiver_does_not_block_other_agents(
    client: TestClient, admin: dict[str, str], ctx: Any
) -> None:
    down = client.post(
        "/v1/agents",
        json={
            "name": "Down",
            "webhook": {"url": "https://down.example.com/x", "secret": SECRET, "events": ["session.created"]},
        },
        headers=admin,
    ).json()["data"]
    up = make_agent(client, admin, events=["session.created"])
    got: list[str] = []
    with respx.mock(assert_all_called=False) as router:
        router.post("https://down.example.com/x").mock(side_effect=httpx.ConnectError("refused"))
        router.post(HOOK).mock(
            side_effect=lambda req: got.append(json.loads(req.content)["agent_id"]) or httpx.Response(200)
        )
        for agent in (down, up):
            client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=admin)
        jobs.pump_events()
        drain(ctx)
    assert got == [up["id"]]
    assert ctx.rq_redis.zcard("rq:scheduled:events") == 1


def test_pump_requeues_events_a_crashed_pump_left_behind(
    client: TestClient, admin: dict[str, str], ctx: Any, redis_url: str
) -> None:
    import redis

    agent = make_agent(client, admin, events=["session.created"])
    client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=admin)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert r.lmove("gw:outbox", "gw:outbox:processing", "LEFT", "RIGHT")  # a pump died after taking it
    with respx.mock(assert_all_called=False) as router:
        route = router.post(HOOK).mock(return_value=httpx.Response(200))
        assert jobs.pump_events() == 1
        drain(ctx)
        assert route.call_count == 1
    assert r.llen("gw:outbox:processing") == 0
