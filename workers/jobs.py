"""RQ job functions: ids in, work delegated to agent_core / channels."""

from __future__ import annotations

import logging

import structlog

from agent_core import turns
from agent_core.store import sessions
from workers import context
from workers.queues import turn_job

log = logging.getLogger("workers.jobs")


def run_turn(session_id: str) -> str:
    structlog.contextvars.bind_contextvars(session_id=session_id)
    try:
        return turns.run_turn(context.get().turn_deps, session_id)
    finally:
        structlog.contextvars.unbind_contextvars("session_id")


def watchdog() -> int:
    """Requeue turns whose lease ran out (worker killed mid-turn, or a lost job)."""
    store = context.get().store
    requeued = 0
    for sid in store.run(sessions.expired_turns()):
        if store.run(sessions.redispatch(sid, turn_job())):
            log.warning("requeued the turn of session %s after its lease expired", sid)
            requeued += 1
    return requeued


def lifecycle_sweep() -> int:
    """Dormancy and closing by inactivity (SPEC §4.5)."""
    from agent_core import lifecycle

    ctx = context.get()
    return lifecycle.sweep(ctx.store)


def task_sweep() -> int:
    """Queue background tasks recorded in Redis whose job went missing (summaries, deliveries)."""
    from agent_core import lifecycle
    from workers.queues import DEFAULT, OUTBOUND, enqueue

    ctx = context.get()
    due = lifecycle.due_tasks(ctx.store)
    for task in due:
        kind, _, ref = task.partition(":")
        if kind == "summary":
            enqueue(ctx.rq_redis, DEFAULT, "workers.jobs.summarize_session", ref)
        elif kind == "deliver":
            sid, _, message_id = ref.partition(":")
            enqueue(ctx.rq_redis, OUTBOUND, "workers.jobs.deliver_message", sid, message_id, retry=0)
    return len(due)


def summarize_session(session_id: str) -> str:
    from agent_core import lifecycle

    ctx = context.get()
    return lifecycle.summarize(ctx.store, ctx.provider_for, session_id)


def deliver_event(event_json: str) -> str:
    """POST one webhook event (RQ retries with backoff; dead letters stay in FailedJobRegistry)."""
    import json

    from agent_core import events
    from agent_core.store import agents

    ctx = context.get()
    agent_id = json.loads(event_json).get("agent_id", "")
    agent = ctx.store.run(agents.get(agent_id)) if agent_id else None
    return events.deliver(ctx.http, agent, event_json)


def pump_events() -> int:
    from agent_core import events
    from workers.queues import EVENTS, enqueue

    ctx = context.get()
    return events.pump(
        ctx.store, lambda item: enqueue(ctx.rq_redis, EVENTS, "workers.jobs.deliver_event", item, retry=8)
    )


DELIVERY_BACKOFF_S = [2, 5, 15, 60, 300, 900, 1800, 3600]


def deliver_message(session_id: str, message_id: str, attempt: int = 0) -> str:
    """Deliver one stored outbound message; retryable failures are rescheduled with backoff
    (honouring Twilio's Retry-After), at most len(DELIVERY_BACKOFF_S) times."""
    from agent_core import delivery
    from channels.twilio import RetryableDeliveryError

    ctx = context.get()
    try:
        return delivery.deliver(ctx.store, ctx.senders, ctx.delivery, session_id, message_id)
    except delivery.Throttled as exc:
        return schedule_delivery(session_id, message_id, attempt, exc.retry_after, str(exc), counts=False)
    except RetryableDeliveryError as exc:
        return schedule_delivery(session_id, message_id, attempt + 1, exc.retry_after, str(exc))


def schedule_delivery(
    session_id: str, message_id: str, attempt: int, retry_after: float | None, reason: str = "", counts: bool = True
) -> str:
    """Deliver again later: after the backoff for `attempt` (and Retry-After), or, for a
    sender at its rate (`counts` False), exactly when its slot comes up."""
    from datetime import timedelta

    from agent_core import delivery
    from workers.queues import OUTBOUND, queue

    ctx = context.get()
    if attempt >= len(DELIVERY_BACKOFF_S):
        ctx.store.run(delivery.give_up(session_id, message_id, f"gave up after {attempt} attempts: {reason}"))
        return "gave up"
    delay = max(retry_after or 0.0, DELIVERY_BACKOFF_S[attempt] if counts else 0.0)
    ctx.store.run(delivery.reschedule(session_id, message_id, delay))
    queue(OUTBOUND, ctx.rq_redis).enqueue_in(
        timedelta(seconds=delay), deliver_message, session_id, message_id, attempt, result_ttl=0
    )
    if counts:
        log.warning("delivery of %s retries in %.0fs (attempt %d): %s", message_id, delay, attempt, reason)
    return f"retry in {delay:.1f}s"


def index_document(document_id: str) -> str:
    """Chunk and index a knowledge document too large to index during its upload request."""
    from agent_core import knowledge

    return knowledge.index_document(context.get().store, document_id)
