"""Rate limits at the HTTP edge: a refused hit is a 429 with Retry-After, counted in /metrics.

The limits themselves are `agent_core.store.limits` (one GCRA for every limit)."""

from __future__ import annotations

from starlette.requests import Request

from agent_core.store import limits
from agent_core.store.limits import Rate
from gateway.api.common import store_of
from gateway.errors import RateLimited
from gateway.metrics import metrics_of


async def enforce(request: Request, limit: str, subject: str, rate: Rate, what: str) -> None:
    """Count a hit of `subject` against `limit`; over it → 429 naming `what` was limited."""
    verdict = await store_of(request).run(limits.hit(limit, subject, rate))
    if verdict.allowed:
        return
    metrics_of(request).rate_limited.labels(limit).inc()
    wait = verdict.retry_after_s
    raise RateLimited(f"rate limited: too many {what}; retry in {wait} s", headers={"Retry-After": str(wait)})


def api_rate(request: Request) -> Rate:
    app = request.app.state.settings.app
    return Rate(app.api_rate_per_s, 1.0, burst=app.api_rate_burst)
