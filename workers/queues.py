"""Queue names and job construction.

Turn jobs are built here but enqueued by the store's Lua scripts (so an inbound message
is one Redis round trip): `turn_job()` produces the exact hash fields `rq.Queue.enqueue`
would write, using RQ's own `Job` class so the format follows the installed RQ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from agent_core.store import TurnJob
from agent_core.store.sessions import TURN_SESSION_PLACEHOLDER

TURNS = "turns"
DEFAULT = "default"
EVENTS = "events"
ALL_QUEUES = (TURNS, DEFAULT, EVENTS)

TURN_TIMEOUT_S = 300
# A queued turn not started within this long is queued again by the watchdog (a job can
# only be lost if Redis lost writes); a started turn's lease is renewed while it runs.
TURN_QUEUE_LEASE_MS = 300_000
FAILURE_TTL_S = 7 * 24 * 3600

_TURN_FUNC = "workers.jobs.run_turn"
SESSION_PLACEHOLDER = TURN_SESSION_PLACEHOLDER
# Job.create needs a connection object but does not use it; this one never connects.
_OFFLINE = redis.Redis(host="localhost", port=1)


def turn_job() -> TurnJob:
    """A turn job whose session id argument is a placeholder the Lua script fills in.

    The payload is stored uncompressed (RQ reads both forms), so the fixed-length UUID
    placeholder can be replaced in place by the session the script resolved.
    """
    job = Job.create(
        _TURN_FUNC,
        args=(SESSION_PLACEHOLDER,),
        connection=_OFFLINE,
        origin=TURNS,
        timeout=TURN_TIMEOUT_S,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
        description="run_turn",
    )
    job._status = JobStatus.QUEUED
    job.enqueued_at = datetime.now(UTC)
    fields = job.to_dict()
    fields.pop("data")
    data = job.data
    flat: list[str] = []
    for k, v in fields.items():
        flat.append(k)
        flat.append(v.value if isinstance(v, Enum) else str(v))
    return TurnJob(
        id=job.id,
        key=job.key.decode() if isinstance(job.key, bytes) else str(job.key),
        queue_key=Queue.redis_queue_namespace_prefix + TURNS,
        fields=flat,
        data=data,
        lease_ms=TURN_QUEUE_LEASE_MS,
    )


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, default_timeout=TURN_TIMEOUT_S)


def enqueue(connection: redis.Redis, queue_name: str, func: str, *args: object, retry: int = 3) -> Job:
    """Enqueue a background job with backoff retries (dead letters in FailedJobRegistry)."""
    return queue(queue_name, connection).enqueue(
        func,
        *args,
        retry=Retry(max=retry, interval=[2, 10, 60]) if retry else None,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
    )
