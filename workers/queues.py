"""Queue names, what runs each kind of follow-up work, and the one backoff table.

Jobs queued by the store's scripts (atomically with a write) are prepared by
workers/rqwire.py; jobs queued from Python (the task sweep, events, retries) go through
RQ's public API here. Both read `JOBS`, so a Task runs the same function on the same
queue with the same retries whichever way it was queued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from agent_core.store import Task, Work

TURNS = "turns"
OUTBOUND = "outbound"
DEFAULT = "default"
EVENTS = "events"
# Worker priority order: replies first, then deliveries, background work, webhooks.
ALL_QUEUES = (TURNS, OUTBOUND, DEFAULT, EVENTS)

JOB_TIMEOUT_S = 300
FAILURE_TTL_S = 7 * 24 * 3600
# Seconds before retry N (of a delivery, or of a job RQ retries): quick at first for a
# blip, then spread out for an outage.
BACKOFF_S = (2, 5, 15, 60, 300, 900, 1800, 3600, 3600, 3600, 3600)
# A delivery gives up after its 7th retry (≈1.9 h); an event after its 10th (≈3.8 h).
DELIVERY_ATTEMPTS = 8
EVENT_RETRIES = 10


@dataclass(frozen=True)
class JobSpec:
    func: str
    queue: str
    # RQ's own retries; 0 where the job reschedules itself (a delivery honours Retry-After).
    retries: int


JOBS: dict[Task, JobSpec] = {
    Task.turn: JobSpec("workers.jobs.run_turn", TURNS, 0),
    Task.deliver: JobSpec("workers.jobs.deliver_message", OUTBOUND, 0),
    Task.summary: JobSpec("workers.jobs.summarize_session", DEFAULT, 5),
    Task.index_document: JobSpec("workers.jobs.index_document", DEFAULT, 3),
    # Placing a call reschedules its own retries (only those that cannot place a second call).
    Task.place_call: JobSpec("workers.jobs.place_call", OUTBOUND, 0),
    Task.finish_call: JobSpec("workers.jobs.finish_call", DEFAULT, 5),
}


def retry(times: int) -> Retry | None:
    return Retry(max=times, interval=list(BACKOFF_S[:times])) if times else None


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT_S)


def enqueue_work(connection: redis.Redis, work: Work) -> Job:
    """Queue the job of `work` (whose args are known) with RQ's public API."""
    spec = JOBS[work.task]
    return queue(spec.queue, connection).enqueue(
        spec.func, *work.args, retry=retry(spec.retries), result_ttl=0, failure_ttl=FAILURE_TTL_S
    )


def enqueue_event(connection: redis.Redis, event_json: str) -> Job:
    return queue(EVENTS, connection).enqueue(
        "workers.jobs.deliver_event",
        event_json,
        retry=retry(EVENT_RETRIES),
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
    )


# Deliveries waiting for the send slot their sender's throttle holds for them, scored by the
# millisecond it comes up. The OutboundPool takes each at that time (workers/turnpool.py):
# RQ's scheduled registry scores whole seconds, so a second's held sends left together, a
# burst of sends each second instead of one every 1/rate s.
HELD_KEY = "gw:q:outbound:held"


def deliver_later(
    connection: redis.Redis, session_id: str, message_id: str, attempt: int, delay_s: float, slot_held: bool
) -> None:
    """Run delivery attempt `attempt` of a message in `delay_s`: at its held send slot to the
    millisecond (`slot_held`: HELD_KEY), or a retry's backoff later (RQ's scheduler)."""
    if slot_held:
        job = queue(OUTBOUND, connection).create_job(
            JOBS[Task.deliver].func,
            args=(session_id, message_id, attempt, True),
            result_ttl=0,
            failure_ttl=FAILURE_TTL_S,
            status=JobStatus.SCHEDULED,
        )
        due_ms = time.time() * 1000 + delay_s * 1000
        with connection.pipeline() as pipe:
            job.save(pipeline=pipe)
            pipe.zadd(HELD_KEY, {job.id: due_ms})
            pipe.execute()
        return
    queue(OUTBOUND, connection).enqueue_in(
        timedelta(seconds=delay_s),
        JOBS[Task.deliver].func,
        session_id,
        message_id,
        attempt,
        slot_held,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
    )


def place_call_later(connection: redis.Redis, call_id: str, attempt: int, delay_s: float) -> None:
    queue(OUTBOUND, connection).enqueue_in(
        timedelta(seconds=delay_s),
        JOBS[Task.place_call].func,
        call_id,
        attempt,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
    )


# RQ's classes need a connection object to name their keys; this one never connects.
OFFLINE = redis.Redis(host="localhost", port=1)


def queue_keys() -> list[tuple[str, str, str, str]]:
    """(queue, state, Redis command, key) for the depth of each queue and its started and
    failed registries, by the key names RQ's own classes report (and the deliveries held
    for a send slot, HELD_KEY)."""
    out = []
    for name in ALL_QUEUES:
        q = queue(name, OFFLINE)
        out.append((name, "queued", "LLEN", q.key))
        out.append((name, "started", "ZCARD", q.started_job_registry.key))
        out.append((name, "failed", "ZCARD", q.failed_job_registry.key))
        if name == OUTBOUND:
            out.append((name, "held", "ZCARD", HELD_KEY))
    return out
