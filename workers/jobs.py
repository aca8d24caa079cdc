"""RQ job functions: ids in, work delegated to agent_core (thin, per CONVENTIONS 8)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from rq import get_current_job

from agent_core import calls, events, knowledge, lifecycle, turns
from agent_core.metrics import EVENT_SECONDS, JOB_CPU_SECONDS, TURN_QUEUE_WAIT_SECONDS, TURN_SECONDS
from agent_core.store import Task, agents, sessions, tasks
from workers import context, queues

log = logging.getLogger("workers.jobs")


def _queue_wait_s() -> float | None:
    """How long the running job waited in its queue (enqueued → started; clocks of two
    machines, so never below zero)."""
    job = get_current_job()
    if job is None or job.enqueued_at is None or job.started_at is None:
        return None
    return max(0.0, (job.started_at - job.enqueued_at).total_seconds())


def run_turn(session_id: str) -> str:
    """The turn job as an RQ worker runs it (`chatgw worker` runs turns on its TurnPool)."""
    return turn(session_id, _queue_wait_s())


@contextmanager
def _cpu(ctx: context.WorkerContext, job: str) -> Iterator[None]:
    """Records the CPU time the job's thread used (`chatgw_job_cpu_seconds`)."""
    cpu = time.thread_time()
    try:
        yield
    finally:
        ctx.metrics.observe(JOB_CPU_SECONDS, time.thread_time() - cpu, job)


def turn(session_id: str, queue_wait_s: float | None) -> str:
    structlog.contextvars.bind_contextvars(session_id=session_id)
    ctx = context.get()
    if queue_wait_s is not None:
        ctx.metrics.observe(TURN_QUEUE_WAIT_SECONDS, queue_wait_s)
    started = time.perf_counter()
    outcome = "error"
    try:
        with _cpu(ctx, "turn"), ctx.gate.held():
            outcome = turns.run_turn(ctx.turn_deps, session_id).value
        return outcome
    finally:
        ctx.metrics.observe(TURN_SECONDS, time.perf_counter() - started, outcome)
        ctx.flush_metrics()
        structlog.contextvars.unbind_contextvars("session_id")


def deliver_message(session_id: str, message_id: str, attempt: int = 0, slot_held: bool = False) -> str:
    """Deliver one stored outbound message (retries are rescheduled by the Deliverer)."""
    ctx = context.get()
    try:
        with _cpu(ctx, "deliver"):
            return ctx.deliver(session_id, message_id, attempt, slot_held=slot_held).value
    finally:
        ctx.flush_metrics()


def summarize_session(session_id: str) -> str:
    ctx = context.get()
    return lifecycle.summarize(ctx.store, ctx.provider_for, session_id)


def place_call(call_id: str, attempt: int = 0) -> str:
    """The escalation job (SPEC §8): summarise the chat, place the call once, tell the chat."""
    ctx = context.get()
    try:
        with _cpu(ctx, "place_call"):
            return calls.place(ctx.store, ctx.placement, call_id, attempt)
    finally:
        ctx.flush_metrics()


def finish_call(call_id: str) -> str:
    """Write an ended call's outcome (summary, context, chat message, memory, event) once."""
    ctx = context.get()
    return calls.finish(ctx.store, ctx.provider_for, call_id)


def index_document(document_id: str) -> str:
    """Chunk and index a knowledge document too large to index during its upload request."""
    return knowledge.index_document(context.get().store, document_id)


def deliver_event(event_json: str) -> str:
    """POST one webhook event (RQ retries with backoff; dead letters stay in FailedJobRegistry)."""
    ctx = context.get()
    started = time.perf_counter()
    outcome = "failed"
    try:
        with _cpu(ctx, "event"):
            agent_id = json.loads(event_json).get("agent_id", "")
            agent = ctx.store.run(agents.get(agent_id)) if agent_id else None
            outcome = events.deliver(ctx.http, agent, event_json)
        return outcome
    except Exception:
        job = get_current_job()
        outcome = "retrying" if job is not None and job.retries_left else "failed"
        raise
    finally:
        ctx.metrics.observe(EVENT_SECONDS, time.perf_counter() - started, outcome)
        ctx.flush_metrics()


def watchdog() -> int:
    """Requeue turns whose lease ran out (worker killed mid-turn, or a lost job)."""
    store = context.get().store
    requeued = 0
    for sid in store.run(sessions.expired_turns()):
        if store.run(sessions.redispatch(sid)):
            log.warning("requeued the turn of session %s after its lease expired", sid)
            requeued += 1
    return requeued


def lifecycle_sweep() -> int:
    """Dormancy and closing by inactivity (SPEC §4.5)."""
    return lifecycle.sweep(context.get().store)


def task_sweep() -> int:
    """Queue follow-up work recorded in Redis whose job never finished (summaries,
    deliveries, index builds)."""
    ctx = context.get()
    due = ctx.store.run(tasks.claim_due())
    for work in due:
        if work.task is not Task.turn:
            queues.enqueue_work(ctx.rq_redis, work)
    return len(due)


def pump_events() -> int:
    ctx = context.get()
    return events.pump(ctx.store, lambda item: queues.enqueue_event(ctx.rq_redis, item))
