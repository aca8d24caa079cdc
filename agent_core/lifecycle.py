"""Session lifecycle (SPEC §4.5): dormancy and closing sweeps, summaries, customer memory.

Sweeps read only the sessions that are due, from the per-agent status indexes (sorted by
last activity), so their cost follows the number of sessions changing, not the total.
A close queues the session's summary `Work` in the same write (store/work.py), so a crash
anywhere only delays a summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent_core.llm.base import LLMError, LLMProvider, LLMRequest
from agent_core.models import Agent, Message, Role, Session, SessionStatus, ms_from_iso, now_iso
from agent_core.store import Change, Op, Store, Work, agents, memory, messages, sessions, tasks

log = logging.getLogger("agent_core.lifecycle")
SUMMARY_PROMPT = (
    "Summarize this customer conversation for the support team and for future conversations "
    "with the same customer, in two to four sentences: what the customer wanted, what was "
    "answered or agreed, and anything still open. Write plain text."
)


def _transition(store: Store, sid: str, want: SessionStatus, before_ms: float, to: SessionStatus) -> bool:
    def plan(session: Session) -> Change | None:
        if session.status is not want or ms_from_iso(session.last_activity_at or session.created_at) > before_ms:
            return None
        if to is SessionStatus.closed:
            return Change(set=sessions.closing("inactive", now_iso()), work=[Work.summary(sid)])
        return Change(set={"status": to.value})

    return store.run(sessions.update(sid, plan)).result is not None


def sweep(store: Store, now_ms: float | None = None) -> int:
    """Mark idle sessions dormant and long-dormant ones closed; returns how many changed."""
    now = now_ms if now_ms is not None else time.time() * 1000
    changed = 0
    for agent in store.run(agents.get_many(store.run(agents.all_ids()))):
        life = agent.lifecycle
        dormant_before = now - life.dormant_after_s * 1000
        close_before = now - (life.dormant_after_s + life.close_after_s) * 1000
        for sid in store.run(sessions.idle_since(agent.id, SessionStatus.active, dormant_before)):
            changed += _transition(store, sid, SessionStatus.active, dormant_before, SessionStatus.dormant)
        for sid in store.run(sessions.idle_since(agent.id, SessionStatus.dormant, close_before)):
            changed += _transition(store, sid, SessionStatus.dormant, close_before, SessionStatus.closed)
    return changed


def transcript(thread: list[Message]) -> str:
    lines = []
    for m in thread:
        if m.role in (Role.customer, Role.agent, Role.operator) and not m.private:
            lines.append(f"{m.role.value}: {m.text}")
    return "\n".join(lines)


def summarize(store: Store, provider_for: Callable[[Agent], tuple[LLMProvider, str]], sid: str) -> str:
    """Write the closed session's summary and add it to the customer's memory."""
    work = Work.summary(sid)
    session = store.run(sessions.get(sid))
    if session is None:
        store.run(tasks.done(work))
        return "gone"
    if session.summary:
        store.run(tasks.done(work))
        return "exists"
    agent = store.run(agents.get(session.agent_id))
    if agent is None:
        store.run(tasks.done(work))
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
    yield from sessions.commit(session.id, Change(set={"summary": summary}))
    entry = {"session_id": session.id, "summary": summary, "created_at": now_iso(), "kind": "session"}
    yield from memory.remember(session.agent_id, session.customer_id, entry)
    yield from tasks.done(Work.summary(session.id))


def memory_for(store: Store) -> Callable[[Agent, Session], list[str]]:
    def read(agent: Agent, session: Session) -> list[str]:
        items = store.run(memory.recall(agent.id, session.customer_id, agent.memory.max_items))
        return [i["summary"] for i in reversed(items) if i.get("session_id") != session.id]

    return read
