"""The TurnPool: turns in flight at once, bounded by its slots, each answered once; a turn job
that fails is dead-lettered in RQ's FailedJobRegistry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from starlette.testclient import TestClient

from agent_core.llm import LLMRequest, LLMResponse
from agent_core.store import keys
from tests.fakes import FakeLLM, completion
from tests.helpers import eventually
from workers import context, jobs
from workers.queues import HELD_KEY, TURNS, deliver_later
from workers.rqwire import take_due
from workers.turnpool import MAX_SLOTS, MIN_SLOTS, CpuGate, GatedProvider, OutboundPool, TurnPool, default_slots


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    gate = threading.Event()
    yield gate
    gate.set()


@pytest.fixture
def held_llm(fake_llm: FakeLLM, release: threading.Event) -> FakeLLM:
    """Every model call waits until `release` is set."""

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        release.wait(30)
        return completion("answer")

    fake_llm.handler = handler
    return fake_llm


def _pool(ctx: context.WorkerContext, slots: int) -> Iterator[TurnPool]:
    pool = TurnPool(ctx.rq_redis, jobs.turn, slots=slots)
    thread = threading.Thread(target=pool.work, daemon=True)
    thread.start()
    yield pool
    pool.stop()
    thread.join(timeout=30)


def _write(client: TestClient, admin: dict[str, str], agent_id: str, n: int) -> list[str]:
    sids = []
    for i in range(n):
        r = client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent_id, "customer_id": f"c{i}", "content": "hi"},
            headers=admin,
        )
        sids.append(r.json()["data"]["session_id"])
    return sids


def _replies(client: TestClient, admin: dict[str, str], sid: str) -> list[str]:
    items = client.get(f"/v1/chat/session/{sid}/messages", headers=admin).json()["data"]["items"]
    return [m["text"] for m in items if m["role"] == "agent"]


def test_pool_holds_as_many_turns_in_flight_as_it_has_slots_and_leaves_the_rest_queued(
    client: TestClient,
    admin: dict[str, str],
    ctx: context.WorkerContext,
    held_llm: FakeLLM,
    release: threading.Event,
) -> None:
    agent = client.post("/v1/agents", json={"name": "A", "debounce_ms": 0}, headers=admin).json()["data"]
    sids = _write(client, admin, agent["id"], 12)
    for _ in _pool(ctx, 8):
        eventually(lambda: len(held_llm.requests) == 8, timeout=20)
        # The other four stay in Redis for any other worker process to take.
        assert ctx.rq_redis.llen(Queue(TURNS, connection=ctx.rq_redis).key) == 4
        release.set()
        eventually(lambda: ctx.redis.zcard(keys.TURNS_PENDING) == 0, timeout=20)
    assert [_replies(client, admin, sid) for sid in sids] == [["answer"]] * 12
    assert len(held_llm.requests) == 12
    # Nothing of the jobs is left behind.
    assert ctx.rq_redis.keys("rq:job:*") == []


def test_a_turn_job_that_fails_is_dead_lettered_and_the_pool_keeps_serving(
    client: TestClient, admin: dict[str, str], ctx: context.WorkerContext, fake_llm: FakeLLM
) -> None:
    fake_llm.handler = lambda body: completion("answer")
    bad = Queue(TURNS, connection=ctx.rq_redis).enqueue("workers.jobs.no_such_job", "x", result_ttl=0)
    agent = client.post("/v1/agents", json={"name": "A", "debounce_ms": 0}, headers=admin).json()["data"]
    (sid,) = _write(client, admin, agent["id"], 1)
    failed = FailedJobRegistry(TURNS, connection=ctx.rq_redis)
    for _ in _pool(ctx, 2):
        eventually(lambda: _replies(client, admin, sid), timeout=20)
        eventually(lambda: bad.id in failed.get_job_ids(), timeout=10)
    assert bad.get_status(refresh=True) == "failed"
    assert _replies(client, admin, sid) == ["answer"]


def test_default_slots_follow_memory_within_bounds() -> None:
    assert default_slots(64 << 20) == MIN_SLOTS
    assert default_slots(256 << 20) == 64
    assert default_slots(64 << 30) == MAX_SLOTS


def test_an_idle_pool_stops_when_asked(ctx: context.WorkerContext) -> None:
    pool = TurnPool(ctx.rq_redis, jobs.turn, slots=2)
    thread = threading.Thread(target=pool.work, daemon=True)
    thread.start()
    pool.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_the_cpu_gate_is_given_up_while_the_model_answers() -> None:
    gate = CpuGate(1)
    entered = threading.Event()
    other_done = threading.Event()
    answered: list[str] = []

    class Slow:
        name = "slow"

        def complete(self, request: LLMRequest) -> LLMResponse:
            entered.set()
            # The other turn gets the gate while this one waits for its model.
            assert other_done.wait(5)
            return LLMResponse(text="late")

    def waiting_turn() -> None:
        with gate.held():
            answered.append(GatedProvider(Slow(), gate).complete(LLMRequest(model="m", messages=[])).text or "")

    def other_turn() -> None:
        assert entered.wait(5)
        with gate.held():
            answered.append("other")
        other_done.set()

    threads = [threading.Thread(target=waiting_turn), threading.Thread(target=other_turn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answered == ["other", "late"]


def test_the_cpu_gate_admits_only_its_size() -> None:
    gate = CpuGate(1)
    inside, leave, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with gate.held():
            inside.set()
            leave.wait(5)

    def second() -> None:
        with gate.held():
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert inside.wait(5)
    b = threading.Thread(target=second)
    b.start()
    assert not second_in.wait(0.2)
    leave.set()
    assert second_in.wait(5)
    a.join(5)
    b.join(5)


def test_held_deliveries_are_taken_once_each_and_not_before_their_slot(ctx: Any) -> None:
    """The OutboundPool's held set (workers.queues.HELD_KEY): a job is taken only once its
    millisecond has come, by one taker however many ask, and the next due time is known."""
    conn = ctx.rq_redis
    deliver_later(conn, "s-1", "m-due", 0, 0.0, True)
    deliver_later(conn, "s-1", "m-soon", 0, 0.2, True)
    deliver_later(conn, "s-1", "m-later", 0, 60.0, True)
    now = time.time() * 1000
    taken, next_due = take_due(conn, HELD_KEY, 10, now)
    assert [job.args for job in taken] == [("s-1", "m-due", 0, True)]
    assert taken[0].func == "workers.jobs.deliver_message"
    assert next_due is not None and now + 150 <= next_due <= now + 250
    assert take_due(conn, HELD_KEY, 10, now)[0] == []  # taken once
    soon, after = take_due(conn, HELD_KEY, 10, now + 250)
    assert [job.args[1] for job in soon] == ["m-soon"]
    assert after is not None and after >= now + 59_000
    assert conn.zcard(HELD_KEY) == 1


def test_the_outbound_pool_sends_a_held_delivery_at_its_slot(ctx: Any) -> None:
    """A held job runs when its slot comes (within the pool's wake-up), not at RQ's next
    whole second and not before."""
    ran: list[float] = []
    pool = OutboundPool(ctx.rq_redis, slots=2)
    pool.runs["workers.jobs.deliver_message"] = lambda *args: ran.append(time.time())
    thread = threading.Thread(target=pool.work, daemon=True)
    thread.start()
    try:
        due = time.time() + 0.4
        deliver_later(ctx.rq_redis, "s-1", "m-1", 0, 0.4, True)
        eventually(lambda: len(ran) == 1, timeout=5)
        assert due - 0.005 <= ran[0] <= due + 0.15, ran[0] - due
    finally:
        pool.stop()
        thread.join(5)
