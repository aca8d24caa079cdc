"""Dormancy, closing, waking and summaries (SPEC §4.5), driving the sweep directly."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core import lifecycle
from agent_core.store import Store, Task, Work, tasks
from agent_core.store.work import GRACE_MS
from tests.agent_core.test_counters import assert_consistent
from tests.conftest import drain
from tests.fakes import FakeLLM, completion
from tests.helpers import eventually, thread
from workers.queues import DEFAULT, enqueue_work, queue


def make_agent(client: TestClient, admin: dict[str, str], dormant: int = 60, close: int = 600) -> dict[str, Any]:
    body = {"name": "A", "lifecycle": {"dormant_after_s": dormant, "close_after_s": close}}
    return client.post("/v1/agents", json=body, headers=admin).json()["data"]  # type: ignore[no-any-return]


def inbound(client: TestClient, h: dict[str, str], agent_id: str, text: str, customer: str = "c1") -> Any:
    r = client.post(
        "/v1/chat/inbound?wait=0", json={"agent_uuid": agent_id, "customer_id": customer, "content": text}, headers=h
    )
    return r.json()["data"]


def get(client: TestClient, h: dict[str, str], sid: str) -> dict[str, Any]:
    return client.get(f"/v1/chat/session/{sid}", headers=h).json()["data"]  # type: ignore[no-any-return]


def test_session_goes_dormant_then_closed_only_when_due(
    client: TestClient, admin: dict[str, str], store: Store
) -> None:
    NOW = time.time() * 1000
    agent = make_agent(client, admin, dormant=60, close=600)
    sid = inbound(client, admin, agent["id"], "hi")["session_id"]
    assert lifecycle.sweep(store, now_ms=NOW + 59_000) == 0
    assert get(client, admin, sid)["status"] == "active"
    assert lifecycle.sweep(store, now_ms=NOW + 61_000) == 1
    assert get(client, admin, sid)["status"] == "dormant"
    active = client.get(f"/v1/chat/session/active?customer_id=c1&agent_uuid={agent['id']}", headers=admin)
    assert active.json()["data"]["id"] == sid
    assert lifecycle.sweep(store, now_ms=NOW + 600_000) == 0
    assert lifecycle.sweep(store, now_ms=NOW + 662_000) == 1
    s = get(client, admin, sid)
    assert s["status"] == "closed" and s["closed_reason"] == "inactive"
    stats = client.get(f"/v1/chat/stats?agent_uuid={agent['id']}", headers=admin).json()["data"]
    assert stats == {"total": 1, "active": 0, "dormant": 0, "closed": 1, "help_requested": 0, "support": 0}


def test_new_message_wakes_a_dormant_session(client: TestClient, admin: dict[str, str], store: Store) -> None:
    NOW = time.time() * 1000
    agent = make_agent(client, admin)
    sid = inbound(client, admin, agent["id"], "hi")["session_id"]
    lifecycle.sweep(store, now_ms=NOW + 61_000)
    assert get(client, admin, sid)["status"] == "dormant"
    assert inbound(client, admin, agent["id"], "back")["session_id"] == sid
    assert get(client, admin, sid)["status"] == "active"


def test_message_after_close_starts_a_new_session_and_memory_carries_over(
    client: TestClient, admin: dict[str, str], store: Store, ctx: Any
) -> None:
    NOW = time.time() * 1000
    agent = make_agent(client, admin)
    first = inbound(client, admin, agent["id"], "my order 77 is late")["session_id"]
    drain(ctx)
    lifecycle.sweep(store, now_ms=NOW + 61_000)
    lifecycle.sweep(store, now_ms=NOW + 700_000)
    assert get(client, admin, first)["status"] == "closed"
    from workers import jobs

    # The close queued the summary job itself; its safety entry is not due yet.
    assert jobs.task_sweep() == 0
    drain(ctx)
    summary = get(client, admin, first)["summary"]
    assert summary and "order 77" in summary
    mem = client.get(f"/v1/customers/c1/memory?agent_uuid={agent['id']}", headers=admin)
    assert mem.json()["data"]["items"][0]["summary"] == summary
    second = inbound(client, admin, agent["id"], "hello again")["session_id"]
    assert second != first
    # The summary settled its safety entry: nothing comes due even long after.
    assert store.run(tasks.claim_due(at_ms=NOW + 10_000_000)) == []


def test_a_lost_summary_job_is_queued_again_by_the_task_sweep(
    client: TestClient, admin: dict[str, str], store: Store, ctx: Any
) -> None:
    NOW = time.time() * 1000
    agent = make_agent(client, admin)
    sid = inbound(client, admin, agent["id"], "my order 77 is late")["session_id"]
    drain(ctx)
    lifecycle.sweep(store, now_ms=NOW + 61_000)
    lifecycle.sweep(store, now_ms=NOW + 700_000)
    # The worker that held the summary job died with it (or Redis lost it).
    assert queue(DEFAULT, ctx.rq_redis).empty() == 1
    assert store.run(tasks.claim_due(at_ms=NOW + 60_000)) == []
    due = store.run(tasks.claim_due(at_ms=time.time() * 1000 + GRACE_MS[Task.summary] + 1_000))
    assert due == [Work.summary(sid)]
    for work in due:
        enqueue_work(ctx.rq_redis, work)
    drain(ctx)
    assert "order 77" in (get(client, admin, sid)["summary"] or "")


@pytest.mark.parametrize("llm_key", ["sk-test"], ids=["openai"])
def test_close_never_waits_for_the_llm(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], fake_llm: FakeLLM, workers: Any
) -> None:
    summary_requested, release = threading.Event(), threading.Event()

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][0]["content"] != lifecycle.SUMMARY_PROMPT:
            return completion("Sorry about that, it ships tomorrow.")
        summary_requested.set()
        # The summary's LLM call answers only once the test lets it: a close that waited for it
        # would still be running (and then show the summary) when the test looks.
        release.wait(10)
        return completion("The customer's order 77 was late; we said it ships tomorrow.")

    fake_llm.handler = handler
    agent = make_agent(client, admin)
    sid = inbound(client, admin, agent["id"], "my order 77 is late")["session_id"]
    eventually(lambda: [m["role"] for m in thread(client, admin, sid, private=False)] == ["customer", "agent"])
    try:
        r = client.post(f"/v1/chat/session/{sid}/support", json={"command": "close"}, headers=operator)
        assert r.status_code == 200, r.text
        assert summary_requested.wait(10), "closing never asked the LLM for a summary"
        s = get(client, admin, sid)
        assert (s["status"], s["closed_reason"], s["summary"]) == ("closed", "closed_by_operator", None)
    finally:
        release.set()
    summary = eventually(lambda: get(client, admin, sid)["summary"])
    assert summary == "The customer's order 77 was late; we said it ships tomorrow."


def test_counters_equal_a_recount_after_random_commands_and_sweeps(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], store: Store, redis_url: str, ctx: Any
) -> None:
    NOW = time.time() * 1000
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    rng = random.Random(11)
    agents = [make_agent(client, admin, dormant=30, close=30)["id"] for _ in range(2)]
    commands = ["takeover", "tell", "whisper", "end", "close", "resolve", None]
    clock = NOW
    for step in range(120):
        agent_id, customer = rng.choice(agents), f"c{rng.randrange(6)}"
        op = rng.random()
        if op < 0.35:
            inbound(client, admin, agent_id, rng.choice(["hi", "I need a human", "order?"]), customer)
        elif op < 0.45:
            client.post("/v1/chat/session", json={"agent_uuid": agent_id, "customer_id": customer}, headers=admin)
        elif op < 0.85:
            items = client.get(f"/v1/chat/sessions?agent_uuid={agent_id}&limit=50", headers=operator).json()["data"][
                "items"
            ]
            if items:
                sid = rng.choice(items)["id"]
                command = rng.choice(commands)
                client.post(
                    f"/v1/chat/session/{sid}/support", json={"command": command, "message": "x"}, headers=operator
                )
        elif op < 0.95:
            clock += rng.choice([10_000, 40_000, 90_000])
            lifecycle.sweep(store, now_ms=clock)
        else:
            drain(ctx)
        if step % 30 == 0:
            assert_consistent(store, r)
    drain(ctx)
    assert_consistent(store, r)
