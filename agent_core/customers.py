"""A customer's data across agents: memory, and erasure of everything (right to be forgotten).

Erasure removes the customer's sessions with their messages, whispers, indexes and
counters (through the same script every write uses, so stats stay exact), their memory,
pending tasks and turn slots, queued webhook events and dev-outbox copies that mention
them. Provider-side copies (Twilio's message logs) are outside this system.
"""

from __future__ import annotations

import json
from typing import Any

from agent_core.lifecycle import memory_key
from agent_core.store import Batch, Cmd, Lua, agents, keys
from agent_core.store.runner import Op

ERASE_SCAN = 1000


def memory(customer_id: str, agent_ids: list[str], limit: int = 100) -> Op[list[dict[str, Any]]]:
    """Memory entries of the customer with these agents, newest first."""
    if not agent_ids:
        return []
    raws = yield Batch(*(Cmd("LRANGE", memory_key(a, customer_id), 0, limit - 1) for a in agent_ids))
    items = [{**json.loads(r), "agent_id": a} for a, rows in zip(agent_ids, raws, strict=True) for r in rows]
    return sorted(items, key=lambda i: i.get("created_at", ""), reverse=True)[:limit]


def erase(customer_id: str) -> Op[dict[str, int]]:
    """Delete all of a customer's data; returns counts of what was removed."""
    index = keys.index("*", f"cust:{customer_id}")
    sids = yield Cmd("ZRANGE", index, 0, -1)
    removed = {"sessions": 0, "messages": 0, "memory_entries": 0, "calls": 0, "pending_events": 0}
    for sid in sids:
        count = yield Cmd("HLEN", keys.messages(sid))
        removed["messages"] += int(count)
        removed["sessions"] += int((yield Lua("remove_session", sid)))
    if sids:
        # The tasks set holds only pending work (summaries, deliveries), so reading it is cheap.
        tasks = yield Cmd("ZRANGE", keys.TASKS, 0, -1)
        stale = [t for t in tasks if any(sid in t for sid in sids)]
        if stale:
            yield Cmd("ZREM", keys.TASKS, *stale)
    agent_ids = yield from agents.all_ids()
    for agent_id in agent_ids:
        mem = memory_key(agent_id, customer_id)
        n = yield Cmd("LLEN", mem)
        if n:
            removed["memory_entries"] += int(n)
            yield Cmd("DEL", mem)
        yield Cmd("HDEL", keys.open_sessions(agent_id), customer_id)
    for queue in (keys.P + "outbox", keys.P + "outbox:processing", keys.P + "devoutbox"):
        entries = yield Cmd("LRANGE", queue, 0, ERASE_SCAN)
        for entry in entries:
            if customer_id in entry or any(sid in entry for sid in sids):
                yield Cmd("LREM", queue, 0, entry)
                if queue != keys.P + "devoutbox":
                    removed["pending_events"] += 1
    return removed
