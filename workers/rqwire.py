"""Everything that knows RQ's storage format, in one place.

The store's scripts queue a job in the same atomic write as the change that needs it (an
inbound message is one Redis round trip, with no `Queue.enqueue` in the request path).
`RQJobFormat.prepare` produces exactly the writes `rq.Queue.enqueue` makes — the job hash
that RQ's own `Job` class serialises, the queue list, the set of known queues — and the
scripts run them without knowing what they are (agent_core/store/work.py). Work on "the
session the script resolves" (a turn at ingest, the summary of the session a new one
replaces) carries a placeholder of a session id's length in its payload, which the script
replaces in place; RQ stores payloads uncompressed, so the pickled string stays valid.
tests/workers/test_rqwire.py proves the writes against the installed RQ.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import DefaultSerializer
from rq.utils import str_to_date

from agent_core.models import uuid4_str
from agent_core.store import PreparedJob, Work
from workers.queues import BACKOFF_S, FAILURE_TTL_S, JOB_TIMEOUT_S, JOBS, OFFLINE

# Stands for the session id in a payload (a UUID, so it has a session id's length).
SESSION_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
_STAMPED = ("created_at", "enqueued_at")


def rq_timestamp() -> str:
    """Now as RQ's `utcformat` writes it (`%Y-%m-%dT%H:%M:%S.%fZ`), by isoformat: half the
    cost of strftime, once per queued job."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _build(work: Work) -> PreparedJob:
    spec = JOBS[work.task]
    args = work.args or (SESSION_PLACEHOLDER,)
    job = Job.create(
        spec.func,
        args=args,
        connection=OFFLINE,
        origin=spec.queue,
        timeout=JOB_TIMEOUT_S,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
        description=spec.func.rsplit(".", 1)[-1],
        status=JobStatus.QUEUED,
    )
    if spec.retries:
        job.retries_left = spec.retries
        job.retry_intervals = list(BACKOFF_S[: spec.retries])
    job.enqueued_at = datetime.now(UTC)
    fields = job.to_dict()
    # Stored uncompressed (RQ reads both forms), so a placeholder can be replaced in place.
    fields.pop("data")
    flat: list[str] = []
    for k, v in fields.items():
        flat.append(k)
        flat.append(v.value if isinstance(v, Enum) else str(v))
    return PreparedJob(
        id=job.id,
        hash_key=job.key.decode() if isinstance(job.key, bytes) else str(job.key),
        fields=tuple(flat),
        payload_field="data",
        payload=job.data,
        queue_key=Queue.redis_queue_namespace_prefix + spec.queue,
        registry_key=Queue.redis_queues_keys,
        splice="" if work.args else SESSION_PLACEHOLDER,
    )


@dataclass(frozen=True)
class _Template:
    job: PreparedJob
    stamp: str
    encoded: str


class RQJobFormat:
    """The store's JobFormat for RQ. Work on the resolved session is built once per task
    and then only re-stamped (a new id and enqueue time), its encoded spec included: ingest
    prepares one per inbound message."""

    def __init__(self) -> None:
        self._templates: dict[Work, _Template] = {}

    def _template(self, work: Work) -> _Template:
        found = self._templates.get(work)
        if found is None:
            built = _build(work)
            # One clock reading for both stamps, so re-stamping is one replacement.
            stamp = rq_timestamp()
            f = list(built.fields)
            for i in range(0, len(f), 2):
                if f[i] in _STAMPED:
                    f[i + 1] = stamp
            job = replace(built, fields=tuple(f))
            found = self._templates[work] = _Template(job, stamp, job.spec_json(work))
        return found

    def prepare(self, work: Work) -> PreparedJob:
        if work.args:
            return _build(work)
        t = self._template(work)
        job_id = uuid4_str()
        stamp = rq_timestamp()
        fields = tuple(stamp if v == t.stamp else v for v in t.job.fields)
        return PreparedJob(
            id=job_id,
            hash_key=Job.redis_job_namespace_prefix + job_id,
            fields=fields,
            payload_field=t.job.payload_field,
            payload=t.job.payload,
            queue_key=t.job.queue_key,
            registry_key=t.job.registry_key,
            splice=t.job.splice,
            encoded=t.encoded.replace(t.job.id, job_id).replace(t.stamp, stamp),
        )


@dataclass(frozen=True)
class TakenJob:
    """A job taken off its queue without an RQ worker (workers/turnpool.py)."""

    id: str
    key: str
    func: str
    args: tuple[Any, ...]
    queue_wait_s: float | None
    kwargs: dict[str, Any] = field(default_factory=dict)


def _unpack(data: bytes) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    try:
        data = zlib.decompress(data)
    except zlib.error:
        pass  # the store's scripts write payloads uncompressed; RQ's own enqueue compresses
    func, _instance, args, kwargs = DefaultSerializer.loads(data)
    return str(func), tuple(args), dict(kwargs or {})


def take_jobs(connection: redis.Redis, queue: str, count: int, *, block_s: float) -> list[TakenJob]:
    """Pop up to `count` job ids off `queue` (waiting up to `block_s` for one when it is
    empty) and read their payloads in one round trip. Each job hash then expires after the
    job timeout (plus a minute), so a process killed before deleting it leaks nothing."""
    queue_key = Queue.redis_queue_namespace_prefix + queue
    ids = connection.lpop(queue_key, count)
    if not ids and block_s > 0:
        popped = connection.blpop([queue_key], timeout=block_s)
        ids = [popped[1]] if popped else []
    return read_jobs(connection, ids or [])


# Takes the held jobs due by ARGV[1] (ms), up to ARGV[2]; returns them and the next due time.
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, nxt[2] or ''}
"""


def take_due(connection: redis.Redis, key: str, count: int, now_ms: float) -> tuple[list[TakenJob], float | None]:
    """Take up to `count` jobs of the time-ordered set `key` that are due by `now_ms` (one
    script: a job is taken once however many pools ask), with their payloads; and when the
    next one is due (ms), if any is left."""
    ids, next_due = connection.eval(_TAKE_DUE, 1, key, repr(now_ms), count)
    return read_jobs(connection, ids), (float(next_due) if next_due else None)


def read_jobs(connection: redis.Redis, ids: list[Any]) -> list[TakenJob]:
    """The payloads of the jobs `ids`, taken off their queue (one round trip)."""
    if not ids:
        return []
    keys = [Job.redis_job_namespace_prefix + (i.decode() if isinstance(i, bytes) else str(i)) for i in ids]
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "data", "enqueued_at")
        pipe.expire(key, JOB_TIMEOUT_S + 60)
    replies = pipe.execute()
    now = datetime.now(UTC)
    taken = []
    for key, (data, enqueued_at) in zip(keys, replies[::2], strict=True):
        if data is None:
            continue  # deleted meanwhile (an `rq` command); nothing to run
        func, args, kwargs = _unpack(data)
        waited = None
        if enqueued_at:
            at = str_to_date(enqueued_at)
            waited = max(0.0, (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds())
        taken.append(TakenJob(key.removeprefix(Job.redis_job_namespace_prefix), key, func, args, waited, kwargs))
    return taken
