"""What operations look at: workers seen, pending turns, monotonic counters, the metrics
workers record (`agent_core.metrics`), queue depths (by the key names the queue reports),
schedule locks, and the dev-mode Twilio token."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Op

WORKER_FRESH_S = 30
WORKER_FORGET_S = 3600


def count(name: str) -> Op[None]:
    """Add one to a monotonic counter (`/metrics` chatgw_events)."""
    yield Cmd("HINCRBY", keys.COUNTERS, name, 1)


def add_metrics(increments: Mapping[tuple[str, str], float]) -> Op[None]:
    """Add to metric hash fields, given as (metric name, field) -> amount; whole amounts
    stay integers (HINCRBY), others are sums (HINCRBYFLOAT)."""
    yield Batch(
        *(
            Cmd("HINCRBY" if isinstance(amount, int) else "HINCRBYFLOAT", keys.metric(name), field, amount)
            for (name, field), amount in increments.items()
        )
    )


def read_metrics(names: Sequence[str]) -> Op[dict[str, dict[str, str]]]:
    """The hash of each named metric (empty when nothing was recorded yet)."""
    replies = yield Batch(*(Cmd("HGETALL", keys.metric(name)) for name in names))
    return {name: dict(reply) for name, reply in zip(names, replies, strict=True)}


def worker_seen(name: str) -> Op[None]:
    now = time.time()
    yield Batch(
        Cmd("ZADD", keys.WORKERS_SEEN, now, name),
        Cmd("ZREMRANGEBYSCORE", keys.WORKERS_SEEN, "-inf", now - WORKER_FORGET_S),
    )


def take_schedule(name: str, owner: str, interval_s: float) -> Op[bool]:
    """True for the one process that runs schedule `name` in this interval, fleet-wide."""
    ok = yield Cmd("SET", keys.schedule_lock(name), owner, "NX", "PX", int(interval_s * 1000))
    return bool(ok)


def snapshot(queue_counts: Sequence[tuple[str, str]]) -> Op[dict[str, Any]]:
    """Redis reachable, fresh workers, pending turns, counters, and the size of each queue key
    given as (`LLEN`|`ZCARD`, key)."""
    replies = yield Batch(
        Cmd("PING"),
        Cmd("ZCOUNT", keys.WORKERS_SEEN, time.time() - WORKER_FRESH_S, "+inf"),
        Cmd("ZCARD", keys.TURNS_PENDING),
        Cmd("HGETALL", keys.COUNTERS),
        *(Cmd(command, key) for command, key in queue_counts),
    )
    return {
        "workers": int(replies[1]),
        "turns_pending": int(replies[2]),
        "counters": {k: int(v) for k, v in replies[3].items()},
        "queue_sizes": [int(n) for n in replies[4:]],
    }


def dev_twilio_token() -> Op[str]:
    """The auth token webhooks are signed with when Twilio is not configured (made once)."""
    token = secrets.token_hex(16)
    created = yield Cmd("SET", keys.DEV_TWILIO_TOKEN, token, "NX")
    if created:
        return token
    existing = yield Cmd("GET", keys.DEV_TWILIO_TOKEN)
    return str(existing)
