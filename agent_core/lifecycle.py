"""Session lifecycle (SPEC §4.5): dormancy and closing sweeps, summaries, customer memory.

Sweeps read only the sessions that are due, from the per-agent status indexes (sorted by
last activity), so their cost follows the number of sessions changing, not the total.
Background tasks (summaries) are recorded in the `tasks` sorted set in the same write
that makes them necessary; the task sweep claims due entries and queues their jobs, and
a job removes its entry when done, so a crash anywhere only delays a summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from agent_core.llm.base import LLMError, LLMProvider, LLMRequest
from agent_core.models import Agent, Role, Session, SessionStatus, now_iso
from agent_core.store import Batch, Cmd, Store, agents, keys, messages, sessions
from agent_core.store.runner import Op

log = logging.getLogger("agent_core.lifecycle")

SWEEP_BATCH = 500
TASK_RETRY_MS = 300_000
MEMORY_KEEP = 100
SUMMARY_PROMPT = (
    "Summarize this customer conversation for the support team and for future conversations "
    "with the same customer, in two to four sentences: what the customer wanted, what was "
    "answered or agreed, and anything still open. Write plain text."
)


def memory_key(agent_id: str, customer_id: str) -> str:
    return f"{keys.P}mem:{agent_id}:{customer_id}"


def _due(index: str, before_ms: float) -> Op[list[str]]:
    sids = yield Cmd("ZRANGEBYSCORE", index, "-inf", int(before_ms), "LIMIT", 0, SWEEP_BATCH)
    return list(sids)


def close_changes(reason: str, at: str) -> dict[str, object]:
    return {
        "status": SessionStatus.closed.value,
        "closed_reason": reason,
        "closed_at": at,
        "help_requested": False,
        "mode": "ai",
        "active_human": "",
    }


def summary_task(sid: str) -> tuple[str, float, str]:
    return (keys.TASKS, time.time() * 1000, f"summary:{sid}")


def _transition(store: Store, sid: str, want: SessionStatus, before_ms: float, to: SessionStatus) -> bool:
    for _ in range(5):
        session = store.run(sessions.get(sid))
        if session is None or session.status is not want:
            return False
        activity = _activity_ms(session)
        if activity > before_ms:
            return False
        at = now_iso()
        if to is SessionStatus.closed:
            res = store.run(
                sessions.commit(
                    sid,
                    expect_version=session.version,
                    set=close_changes("inactive", at),
                    zadd=[summary_task(sid)],
                )
            )
        else:
            res = store.run(sessions.commit(sid, expect_version=session.version, set={"status": to.value}))
        if res.ok:
            return True
    return False


def _activity_ms(session: Session) -> float:
    from datetime import datetime

    stamp = session.last_activity_at or session.created_at
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def sweep(store: Store, now_ms: float | None = None) -> int:
    """Mark idle sessions dormant and long-dormant ones closed; returns how many changed."""
    now = now_ms if now_ms is not None else time.time() * 1000
    changed = 0
    for agent in store.run(agents.get_many(store.run(agents.all_ids()))):
        life = agent.lifecycle
        dormant_before = now - life.dormant_after_s * 1000
        close_before = now - (life.dormant_after_s + life.close_after_s) * 1000
        active = keys.index(agent.id, "status:active")
        dormant = keys.index(agent.id, "status:dormant")
        for sid in store.run(_due(active, dormant_before)):
            changed += _transition(store, sid, SessionStatus.active, dormant_before, SessionStatus.dormant)
        for sid in store.run(_due(dormant, close_before)):
            changed += _transition(store, sid, SessionStatus.dormant, close_before, SessionStatus.closed)
    return changed


def due_tasks(store: Store, now_ms: float | None = None) -> list[str]:
    """Claim due background tasks (their next retry moves TASK_RETRY_MS ahead)."""
    now = now_ms if now_ms is not None else time.time() * 1000
    due = store.run(_due(keys.TASKS, now))
    if due:
        store.run(_claim(due, now + TASK_RETRY_MS))
    return due


def _claim(members: list[str], until: float) -> Op[None]:
    yield Batch(*(Cmd("ZADD", keys.TASKS, "XX", int(until), m) for m in members))


def transcript(thread: list) -> str:  # type: ignore[type-arg]
    lines = []
    for m in thread:
        if m.role in (Role.customer, Role.agent, Role.operator) and not m.private:
            lines.append(f"{m.role.value}: {m.text}")
    return "\n".join(lines)


def summarize(store: Store, provider_for: Callable[[Agent], tuple[LLMProvider, str]], sid: str) -> str:
    """Write the closed session's summary and add it to the customer's memory."""
    task = f"summary:{sid}"
    session = store.run(sessions.get(sid))
    if session is None:
        store.run(_done(task))
        return "gone"
    if session.summary:
        store.run(_done(task))
        return "exists"
    agent = store.run(agents.get(session.agent_id))
    if agent is None:
        store.run(_done(task))
        return "no agent"
    thread = store.run(messages.recent(sid, session.seq, 200))
    text = transcript(thread)
    if not text:
        summary = "No conversation took place."
    else:
        provider, model = provider_for(agent)
        request = LLMRequest(
            model=model,
            messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": text}],
            temperature=0.2,
            max_tokens=300,
            purpose="summary",
        )
        try:
            summary = (provider.complete(request).text or "").strip() or "No summary available."
        except LLMError as exc:
            # RQ retries the job with backoff; the task entry stays until it succeeds.
            raise RuntimeError(f"summary of session {sid} failed: {exc}") from exc
    store.run(_store_summary(session, summary))
    return "summarized"


def _store_summary(session: Session, summary: str) -> Op[None]:
    entry = json.dumps(
        {"session_id": session.id, "summary": summary, "created_at": now_iso(), "kind": "session"},
        ensure_ascii=False,
    )
    mem = memory_key(session.agent_id, session.customer_id)
    yield from sessions.commit(session.id, set={"summary": summary})
    yield Batch(
        Cmd("LPUSH", mem, entry),
        Cmd("LTRIM", mem, 0, MEMORY_KEEP - 1),
        Cmd("ZREM", keys.TASKS, f"summary:{session.id}"),
    )


def _done(task: str) -> Op[None]:
    yield Cmd("ZREM", keys.TASKS, task)


def memory(agent_id: str, customer_id: str, limit: int) -> Op[list[dict[str, str]]]:
    """Newest first."""
    raw = yield Cmd("LRANGE", memory_key(agent_id, customer_id), 0, limit - 1)
    return [json.loads(r) for r in raw]


def memory_for(store: Store) -> Callable[[Agent, Session], list[str]]:
    def read(agent: Agent, session: Session) -> list[str]:
        items = store.run(memory(agent.id, session.customer_id, agent.memory.max_items))
        return [i["summary"] for i in reversed(items) if i.get("session_id") != session.id]

    return read
