"""RQ job functions: ids in, work delegated to agent_core / channels."""

from __future__ import annotations

import logging

from agent_core import turns
from agent_core.store import sessions
from workers import context
from workers.queues import turn_job

log = logging.getLogger("workers.jobs")


def run_turn(session_id: str) -> str:
    return turns.run_turn(context.get().turn_deps, session_id)


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
    """Queue background tasks recorded in Redis whose job went missing (e.g. summaries)."""
    from agent_core import lifecycle

    ctx = context.get()
    due = lifecycle.due_tasks(ctx.store)
    for task in due:
        kind, _, ref = task.partition(":")
        if kind == "summary":
            from workers.queues import DEFAULT, enqueue

            enqueue(ctx.rq_redis, DEFAULT, "workers.jobs.summarize_session", ref)
    return len(due)


def summarize_session(session_id: str) -> str:
    from agent_core import lifecycle

    ctx = context.get()
    return lifecycle.summarize(ctx.store, ctx.provider_for, session_id)
