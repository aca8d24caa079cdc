"""Erasing a customer (right to be forgotten): their sessions with messages, whispers,
indexes and counters (through the same script every write uses, so stats stay exact), their
memory, escalation calls, pending tasks and turn slots, queued webhook events and dev-outbox
copies."""

from __future__ import annotations

from agent_core.store import agents, calls, keys, memory, tasks
from agent_core.store.runner import Cmd, Lua, Op

ERASE_SCAN = 1000


def erase(customer_id: str) -> Op[dict[str, int]]:
    """Delete all of a customer's data; returns counts of what was removed."""
    sids = yield Cmd("ZRANGE", keys.index("*", f"cust:{customer_id}"), 0, -1)
    removed = {"sessions": 0, "messages": 0, "memory_entries": 0, "calls": 0, "pending_events": 0}
    for sid in sids:
        count = yield Cmd("HLEN", keys.messages(sid))
        removed["messages"] += int(count)
        removed["calls"] += yield from calls.remove_of_session(sid)
        removed["sessions"] += int((yield Lua("remove_session", sid)))
    if sids:
        stale = yield from tasks.pending_for(list(sids))
        if stale:
            yield Cmd("ZREM", keys.TASKS, *stale)
    agent_ids = yield from agents.all_ids()
    removed["memory_entries"] = yield from memory.forget(customer_id, agent_ids)
    for agent_id in agent_ids:
        yield Cmd("HDEL", keys.open_sessions(agent_id), customer_id)
    for queue in (keys.OUTBOX, keys.OUTBOX_PROCESSING, keys.DEV_OUTBOX):
        entries = yield Cmd("LRANGE", queue, 0, ERASE_SCAN)
        for entry in entries:
            if customer_id in entry or any(sid in entry for sid in sids):
                yield Cmd("LREM", queue, 0, entry)
                if queue != keys.DEV_OUTBOX:
                    removed["pending_events"] += 1
    return removed
