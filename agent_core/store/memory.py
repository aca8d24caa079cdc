"""Customer memory: per (agent, customer), summaries of earlier sessions and calls, newest first."""

from __future__ import annotations

import json
from typing import Any

from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Op

MEMORY_KEEP = 100


def remember(agent_id: str, customer_id: str, entry: dict[str, Any]) -> Op[None]:
    key = keys.memory(agent_id, customer_id)
    yield Batch(Cmd("LPUSH", key, json.dumps(entry, ensure_ascii=False)), Cmd("LTRIM", key, 0, MEMORY_KEEP - 1))


def recall(agent_id: str, customer_id: str, limit: int) -> Op[list[dict[str, Any]]]:
    """Newest first."""
    raw = yield Cmd("LRANGE", keys.memory(agent_id, customer_id), 0, limit - 1)
    return [json.loads(r) for r in raw]


def of_customer(customer_id: str, agent_ids: list[str], limit: int = 100) -> Op[list[dict[str, Any]]]:
    """The customer's entries with these agents (each tagged with its agent), newest first."""
    if not agent_ids:
        return []
    raws = yield Batch(*(Cmd("LRANGE", keys.memory(a, customer_id), 0, limit - 1) for a in agent_ids))
    items = [{**json.loads(r), "agent_id": a} for a, rows in zip(agent_ids, raws, strict=True) for r in rows]
    return sorted(items, key=lambda i: i.get("created_at", ""), reverse=True)[:limit]


def forget(customer_id: str, agent_ids: list[str]) -> Op[int]:
    """Erase the customer's memory with these agents; returns how many entries went."""
    removed = 0
    for agent_id in agent_ids:
        key = keys.memory(agent_id, customer_id)
        n = yield Cmd("LLEN", key)
        if n:
            removed += int(n)
            yield Cmd("DEL", key)
    return removed
