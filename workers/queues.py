"""Queue names and job construction.

Turn jobs are built here but enqueued by the store's Lua scripts (so an inbound message
is one Redis round trip): `turn_job()` produces the exact hash fields `rq.Queue.enqueue`
would write, using RQ's own `Job` class so the format follows the installed RQ.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import utcformat

from agent_core.store import TurnJob
from agent_core.store.sessions import TURN_SESSION_PLACEHOLDER

TURNS = "turns"
OUTBOUND = "outbound"
DEFAULT = "default"
EVENTS = "events"
# Worker priority order: replies first, then deliveries, background work, webhooks.
ALL_QUEUES = (TURNS, OUTBOUND, DEFAULT, EVENTS)

TURN_TIMEOUT_S = 300
# A queued turn not started within this long is queued again by the watchdog (a job can
# only be lost if Redis lost writes); a started turn's lease is renewed while it runs.
TURN_QUEUE_LEASE_MS = 300_000
FAILURE_TTL_S = 7 * 24 * 3600

_TURN_FUNC = "workers.jobs.run_turn"
SESSION_PLACEHOLDER = TURN_SESSION_PLACEHOLDER
# Job.create needs a connection object but does not use it; this one never connects.
_OFFLINE = redis.Redis(host="localhost", port=1)


_TURN_TEMPLATE: TurnJob | None = None


def turn_job() -> TurnJob:
    """A turn job whose session id argument is a placeholder the Lua script fills in.

    The payload is stored uncompressed (RQ reads both forms), so the fixed-length UUID
    placeholder can be replaced in place by the session the script resolved. Built once
    with RQ's Job class; each call only stamps a new id and the enqueue times.
    """
    global _TURN_TEMPLATE
    if _TURN_TEMPLATE is None:
        _TURN_TEMPLATE = _build_turn_job()
    job_id = str(uuid.uuid4())
    stamp = utcformat(datetime.now(UTC))
    fields = list(_TURN_TEMPLATE.fields)
    for i in range(0, len(fields), 2):
        if fields[i] in ("created_at", "enqueued_at"):
            fields[i + 1] = stamp
    return TurnJob(
        id=job_id,
        key=Job.redis_job_namespace_prefix + job_id,
        queue_key=_TURN_TEMPLATE.queue_key,
        fields=fields,
        data=_TURN_TEMPLATE.data,
        lease_ms=TURN_QUEUE_LEASE_MS,
    )


def _build_turn_job() -> TurnJob:
    return prepared_job(_TURN_FUNC, SESSION_PLACEHOLDER, queue_name=TURNS, retries=0, lease_ms=TURN_QUEUE_LEASE_MS)


RETRY_INTERVALS = [5, 30, 120, 600, 1800, 3600, 3600, 3600]


def prepared_job(func: str, *args: object, queue_name: str = DEFAULT, retries: int = 5, lease_ms: int = 0) -> TurnJob:
    """A job (with backoff retries) for a store script to enqueue atomically with a write:
    the hash fields `rq.Queue.enqueue` would write, built by RQ's own Job class."""
    job = Job.create(
        func,
        args=args,
        connection=_OFFLINE,
        origin=queue_name,
        timeout=TURN_TIMEOUT_S,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
        description=func.rsplit(".", 1)[-1],
    )
    if retries:
        job.retries_left = retries
        job.retry_intervals = RETRY_INTERVALS[:retries]
    job._status = JobStatus.QUEUED
    job.enqueued_at = datetime.now(UTC)
    fields = job.to_dict()
    fields.pop("data")
    flat: list[str] = []
    for k, v in fields.items():
        flat.append(k)
        flat.append(v.value if isinstance(v, Enum) else str(v))
    return TurnJob(
        id=job.id,
        key=job.key.decode() if isinstance(job.key, bytes) else str(job.key),
        queue_key=Queue.redis_queue_namespace_prefix + queue_name,
        fields=flat,
        data=job.data,
        lease_ms=lease_ms,
    )


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=TURN_TIMEOUT_S)


def enqueue(connection: redis.Redis, queue_name: str, func: str, *args: object, retry: int = 3) -> Job:
    """Enqueue a background job with backoff retries (dead letters in FailedJobRegistry)."""
    return queue(queue_name, connection).enqueue(
        func,
        *args,
        retry=Retry(max=retry, interval=RETRY_INTERVALS[:retry]) if retry else None,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
    )


def deliver_job(session_id: str, message_id: str) -> TurnJob:
    # No RQ retries: deliver_message reschedules itself, honouring Twilio's Retry-After.
    return prepared_job("workers.jobs.deliver_message", session_id, message_id, queue_name=OUTBOUND, retries=0)


def summary_job(session_id: str) -> TurnJob:
    return prepared_job("workers.jobs.summarize_session", session_id, queue_name=DEFAULT)


def support_jobs() -> Any:
    from agent_core.support import Jobs

    return Jobs(turn=turn_job, deliver=deliver_job, summary=summary_job)
