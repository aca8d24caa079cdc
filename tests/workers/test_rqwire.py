"""The jobs the store's scripts queue are exactly what RQ's own `Queue.enqueue` writes, as the
installed RQ reads and runs them (workers/rqwire.py is the one place that knows the format)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import str_to_date, utcformat

from agent_core.models import AgentSpec, Channel, Role
from agent_core.store import Change, Store, Task, Work, agents, sessions
from tests.conftest import drain
from workers import context, queues
from workers.rqwire import SESSION_PLACEHOLDER, RQJobFormat, rq_timestamp

# Fields that differ between any two jobs (clocks), that only RQ's enqueue knows, or that we
# set on purpose: the description names the function only (RQ's default repeats the args,
# which for a template would be the placeholder).
VOLATILE = {b"created_at", b"enqueued_at", b"redis_server_version", b"description"}


def ingest_one(store: Store, customer: str = "+15550001234") -> tuple[str, str]:
    agent = store.run(agents.create(AgentSpec(name="Wire", debounce_ms=0))).agent
    assert agent is not None
    msg = sessions.new_message(Role.customer, "hello", created_at="2026-01-01T00:00:00.000Z")
    res = store.run(sessions.ingest(customer_id=customer, channel=Channel.api, message=msg, agent_id=agent.id))
    assert res.session_id is not None
    return agent.id, res.session_id


def queued_job(rq: redis.Redis, queue: str) -> Job:
    [job_id] = Queue(queue, connection=rq).job_ids
    return Job.fetch(job_id, connection=rq)


def enqueued_by_rq(rq: redis.Redis, work: Work, args: tuple[str, ...]) -> dict[bytes, Any]:
    spec = queues.JOBS[work.task]
    job = queues.queue(spec.queue, rq).enqueue(
        spec.func, *args, retry=queues.retry(spec.retries), result_ttl=0, failure_ttl=queues.FAILURE_TTL_S
    )
    fields = rq.hgetall(job.key)
    job.delete()
    return fields


def comparable(fields: dict[bytes, Any]) -> dict[bytes, Any]:
    # The payload is compared decoded (RQ's enqueue compresses it, the scripts store it plain).
    return {k: v for k, v in fields.items() if k not in VOLATILE and k != b"data"}


def test_a_turn_queued_at_ingest_is_the_job_rq_would_enqueue(ctx: context.WorkerContext) -> None:
    _, sid = ingest_one(ctx.store)
    job = queued_job(ctx.rq_redis, queues.TURNS)
    assert job.func_name == "workers.jobs.run_turn"
    assert job.args == (sid,)  # the placeholder was replaced by the session the script found
    assert job.get_status() is JobStatus.QUEUED
    assert job.origin == queues.TURNS and job.timeout == queues.JOB_TIMEOUT_S
    assert Queue(queues.TURNS, connection=ctx.rq_redis) in Queue.all(connection=ctx.rq_redis)
    ours = ctx.rq_redis.hgetall(job.key)
    assert ours[b"description"] == b"run_turn"
    theirs = enqueued_by_rq(ctx.rq_redis, Work.turn(), (sid,))
    assert comparable(ours) == comparable(theirs)


def test_work_with_its_arguments_is_the_job_rq_would_enqueue_with_its_retries(ctx: context.WorkerContext) -> None:
    _, sid = ingest_one(ctx.store)
    Queue(queues.TURNS, connection=ctx.rq_redis).empty()
    work = Work.summary(sid)
    res = ctx.store.run(
        sessions.commit(sid, Change(set=sessions.closing("test", "2026-01-01T00:00:00.000Z"), work=[work]))
    )
    assert res.ok
    job = queued_job(ctx.rq_redis, queues.DEFAULT)
    assert (job.func_name, job.args) == ("workers.jobs.summarize_session", (sid,))
    assert job.retries_left == queues.JOBS[Task.summary].retries
    assert job.retry_intervals == list(queues.BACKOFF_S[: job.retries_left])
    assert comparable(ctx.rq_redis.hgetall(job.key)) == comparable(enqueued_by_rq(ctx.rq_redis, work, (sid,)))


def test_a_real_worker_runs_what_the_scripts_queued(ctx: context.WorkerContext) -> None:
    _, sid = ingest_one(ctx.store)
    drain(ctx)
    session = ctx.store.run(sessions.get(sid))
    assert session is not None and session.answered_seq == session.last_cust_seq == 1


def test_the_placeholder_has_a_session_ids_length_and_is_prepared_once_per_task() -> None:
    fmt = RQJobFormat()
    first, second = fmt.prepare(Work.turn()), fmt.prepare(Work.turn())
    assert len(SESSION_PLACEHOLDER) == 36 and first.splice == SESSION_PLACEHOLDER
    assert SESSION_PLACEHOLDER.encode() in first.payload
    assert first.id != second.id and first.hash_key.endswith(first.id)
    assert first.payload == second.payload
    assert fmt.prepare(Work.deliver("s", "m")).splice == ""


def test_a_restamped_templates_encoded_spec_is_its_own_spec() -> None:
    fmt = RQJobFormat()
    for job in (fmt.prepare(Work.turn()), fmt.prepare(Work.turn())):
        assert json.loads(job.spec_json(Work.turn())) == json.loads(json.dumps(job.spec(Work.turn())))
        stamps = {
            job.fields[i + 1] for i in range(0, len(job.fields), 2) if job.fields[i] in ("created_at", "enqueued_at")
        }
        assert len(stamps) == 1


def test_the_job_timestamp_is_the_one_rq_writes() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    stamp = rq_timestamp()
    after = datetime.now(UTC).replace(tzinfo=None)
    parsed = str_to_date(stamp)
    assert utcformat(parsed) == stamp and len(stamp) == len("2026-01-02T03:04:05.123456Z")
    assert before <= parsed.replace(tzinfo=None) <= after
