"""The event outbox (SPEC §11): store scripts append events in the same write as the change
they describe; the pump moves them into `processing` while it queues their delivery jobs."""

from __future__ import annotations

from agent_core.store import keys
from agent_core.store.runner import Cmd, Op


def take(limit: int) -> Op[list[str]]:
    """Up to `limit` events, moved to `processing` (acknowledge each once its job is queued)."""
    out = []
    for _ in range(limit):
        item = yield Cmd("LMOVE", keys.OUTBOX, keys.OUTBOX_PROCESSING, "LEFT", "RIGHT")
        if item is None:
            break
        out.append(item)
    return out


def unacknowledged() -> Op[list[str]]:
    """Events a pump took but never acknowledged (it died mid-way)."""
    items = yield Cmd("LRANGE", keys.OUTBOX_PROCESSING, 0, -1)
    return list(items)


def acknowledge(item: str) -> Op[None]:
    yield Cmd("LREM", keys.OUTBOX_PROCESSING, 1, item)
