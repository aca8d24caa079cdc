"""Events out (SPEC §11): signed JSON POSTs to an agent's webhook, at least once.

Store scripts append events to the `outbox` list in the same write as the change they
describe; `pump` turns them into delivery jobs (each retried with backoff on its own, so
a receiver that is down delays only its own events); receivers dedupe by `event_id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from agent_core.models import Agent
from agent_core.store import Store, outbox

PUMP_BATCH = 500
TIMEOUT_S = 10.0


class EventDeliveryError(Exception):
    """The receiver did not accept the event (non-2xx or unreachable); retried with backoff."""


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (documented for integrators; used by our tests)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    expected = signature(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def pump(store: Store, enqueue: Callable[[str], object]) -> int:
    """Queue a delivery job per outboxed event. Run by one process at a time (scheduler lock);
    anything left in `processing` is from a pump that died mid-way and is queued again."""
    moved = store.run(outbox.unacknowledged()) + store.run(outbox.take(PUMP_BATCH))
    for item in moved:
        enqueue(item)
        store.run(outbox.acknowledge(item))
    return len(moved)


def deliver(http: httpx.Client, agent: Agent | None, event_json: str) -> str:
    """POST one event; raises EventDeliveryError to be retried. Returns what happened."""
    event: dict[str, Any] = json.loads(event_json)
    hook = agent.webhook if agent else None
    if hook is None or event.get("type") not in hook.events:
        return "unsubscribed"
    body = event_json.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "chat-agent-gateway",
        "X-Event-Id": str(event.get("event_id")),
        "X-Event-Type": str(event.get("type")),
        "X-Signature": signature(hook.secret, body, int(time.time())),
    }
    try:
        response = http.post(hook.url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise EventDeliveryError(f"{hook.url}: {exc.__class__.__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise EventDeliveryError(f"{hook.url} answered {response.status_code}")
    return "delivered"
