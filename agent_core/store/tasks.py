"""The safety set of follow-up work (store/work.py): entries are written with the work's
job; the job removes its entry when done; the task sweep re-queues entries whose job
never finished."""

from __future__ import annotations

from agent_core.models import now_ms
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Op
from agent_core.store.work import GRACE_MS, Work

SWEEP_BATCH = 500
# A claimed entry comes due again after this long, should its new job be lost too.
RETRY_MS = 300_000


def done(work: Work) -> Op[None]:
    yield Cmd("ZREM", keys.TASKS, work.entry)


def postpone(work: Work, delay_s: float) -> Op[None]:
    """Move a pending entry past a retry scheduled in `delay_s` (plus the work's grace), so
    the sweep does not race the retry."""
    yield Cmd("ZADD", keys.TASKS, "XX", now_ms() + int(delay_s * 1000) + GRACE_MS[work.task], work.entry)


def claim_due(at_ms: float | None = None) -> Op[list[Work]]:
    """Due entries, each moved RETRY_MS ahead (claimed); unknown entries are dropped."""
    now = at_ms if at_ms is not None else now_ms()
    entries = yield Cmd("ZRANGEBYSCORE", keys.TASKS, "-inf", int(now), "LIMIT", 0, SWEEP_BATCH)
    if not entries:
        return []
    yield Batch(*(Cmd("ZADD", keys.TASKS, "XX", int(now + RETRY_MS), e) for e in entries))
    due = [(e, Work.from_entry(e)) for e in entries]
    unknown = [e for e, w in due if w is None]
    if unknown:
        yield Cmd("ZREM", keys.TASKS, *unknown)
    return [w for _, w in due if w is not None]


def pending_for(session_ids: list[str]) -> Op[list[str]]:
    """Entries that mention any of these sessions (the set holds only pending work)."""
    entries = yield Cmd("ZRANGE", keys.TASKS, 0, -1)
    return [e for e in entries if any(sid in e for sid in session_ids)]
