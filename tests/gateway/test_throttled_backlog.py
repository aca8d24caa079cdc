"""A backlog for one sender's rate waits in Redis at its held slots: each reply is throttled
at most once and sent exactly once, however the held deliveries line up; each goes out at
its slot, not in a batch per second."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from starlette.testclient import TestClient

from agent_core.settings import TwilioSettings
from tests.channels.twilio.wire import MESSAGES_PATH, sms_form
from tests.conftest import LLM_BASE, drain
from tests.fakes import FakeLLM
from tests.gateway.test_metrics import moved, scrape, total
from tests.gateway.test_twilio import run_scheduled
from tests.twilio_helpers import FakeTwilioREST, post_webhook
from tests.twilio_helpers import twilio_settings as twilio_settings_for
from workers.queues import HELD_KEY

AGENT_NUMBER = "+15550001111"
CUSTOMERS = [f"+1555765{i:04d}" for i in range(8)]


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def twilio_settings() -> TwilioSettings:
    # One send slot every 0.5 s, so all but the first replies wait beyond the worker's 0.25 s.
    return twilio_settings_for(2)


@pytest.fixture
def twilio() -> Iterator[FakeTwilioREST]:
    fake, llm = FakeTwilioREST(), FakeLLM()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{LLM_BASE}/chat/completions").mock(side_effect=llm.respond)
        router.post(f"https://api.twilio.com{MESSAGES_PATH}").mock(side_effect=fake)
        yield fake


def test_a_throttled_backlog_is_sent_once_each_at_held_slots(
    client: TestClient, admin: dict[str, str], twilio: FakeTwilioREST, ctx: Any
) -> None:
    body = {"name": "Rate", "channels": {"numbers": [AGENT_NUMBER]}, "debounce_ms": 0}
    assert client.post("/v1/agents", json=body, headers=admin).status_code == 200
    for number in CUSTOMERS:
        assert (
            post_webhook(client, "/twilio/messages", sms_form(From=number, Body=f"hi from {number}")).status_code == 200
        )
    drain(ctx)
    held = ctx.rq_redis.zrange(HELD_KEY, 0, -1, withscores=True)
    sent_now = len(twilio.requests)
    # The sender's rate let the first reply (or two) through; each other one holds a slot,
    # to the millisecond: 0.5 s apart (RQ's scheduler would have scored them in whole seconds).
    assert 1 <= sent_now < len(CUSTOMERS)
    assert len(held) == len(CUSTOMERS) - sent_now
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(held)]
    assert all(450 <= gap <= 550 for gap in gaps), gaps
    # Every held reply runs once, even all at once (fast-forwarded): none is throttled
    # again, none is sent twice.
    before = scrape(client)
    assert total(before, "chatgw_queue_jobs", queue="outbound", state="held") == len(held)
    run_scheduled(ctx)
    assert ctx.rq_redis.zcard(HELD_KEY) == 0
    assert sorted(r["To"] for r in twilio.requests) == sorted(CUSTOMERS)
    # Each held reply ran as its own delivery job, whose CPU the worker records.
    assert moved(before, scrape(client), "chatgw_job_cpu_seconds_count", job="deliver") == len(held)


def test_a_held_reply_whose_worker_died_is_sent_once_by_the_task_sweep(
    client: TestClient, admin: dict[str, str], twilio: FakeTwilioREST, ctx: Any
) -> None:
    from agent_core.store import tasks
    from workers.queues import enqueue_work

    body = {"name": "Rate", "channels": {"numbers": [AGENT_NUMBER]}, "debounce_ms": 0}
    assert client.post("/v1/agents", json=body, headers=admin).status_code == 200
    for number in CUSTOMERS:
        assert post_webhook(client, "/twilio/messages", sms_form(From=number, Body=f"hi {number}")).status_code == 200
    drain(ctx)
    assert ctx.rq_redis.zcard(HELD_KEY) >= 2
    # A worker took one held reply's job and was killed before sending it: the job is gone.
    lost = ctx.rq_redis.zrange(HELD_KEY, 0, 0)[0].decode()
    ctx.rq_redis.zrem(HELD_KEY, lost)
    ctx.rq_redis.delete(f"rq:job:{lost}")
    run_scheduled(ctx)
    assert len(twilio.requests) == len(CUSTOMERS) - 1
    # The task sweep finds the reply its safety entry still names, once its grace is over.
    due = ctx.store.run(tasks.claim_due(at_ms=time.time() * 1000 + 3_600_000))
    assert len(due) == 1
    for work in due:
        enqueue_work(ctx.rq_redis, work)
    for _ in range(5):
        run_scheduled(ctx)
        if ctx.rq_redis.zcard(HELD_KEY) == 0:
            break
    assert sorted(r["To"] for r in twilio.requests) == sorted(CUSTOMERS)
    assert ctx.store.run(tasks.claim_due(at_ms=time.time() * 1000 + 3_600_000)) == []
