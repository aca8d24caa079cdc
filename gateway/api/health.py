"""Health, readiness and Prometheus metrics (SPEC §6.2)."""

from __future__ import annotations

import hmac
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent_core.metrics import FLEET
from agent_core.store import health, sessions
from gateway.api.common import store_of
from gateway.api.routing import Endpoint
from gateway.auth import presented_token
from gateway.errors import error_response
from gateway.metrics import Fleet, metrics_of
from workers.queues import queue_keys

WORKER_FRESH_S = health.WORKER_FRESH_S
QUEUE_KEYS = queue_keys()


async def healthz(request: Request) -> Response:
    return JSONResponse({"success": True, "data": {"status": "ok"}})


async def _snapshot(request: Request) -> dict[str, Any]:
    snap = await store_of(request).run(health.snapshot([(command, key) for _, _, command, key in QUEUE_KEYS]))
    queues: dict[str, dict[str, int]] = {}
    for (queue, state, _, _), size in zip(QUEUE_KEYS, snap.pop("queue_sizes"), strict=True):
        queues.setdefault(queue, {})[state] = size
    return {
        "redis": "ok",
        **snap,
        "queues": queues,
        "llm_provider": request.app.state.settings.llm.provider,
    }


async def readyz(request: Request) -> Response:
    try:
        data = await _snapshot(request)
    except RedisError as exc:
        return JSONResponse(
            {"success": False, "errors": [f"redis unreachable: {exc}"], "data": {"redis": "unreachable"}},
            status_code=503,
        )
    errors = []
    if data["workers"] == 0:
        errors.append(f"no worker seen in the last {WORKER_FRESH_S} s (start one: chatgw worker)")
    if errors:
        return JSONResponse({"success": False, "errors": errors, "data": data}, status_code=503)
    return JSONResponse({"success": True, "data": {"status": "ready", **data}})


def _may_scrape(request: Request) -> bool:
    """Without METRICS_TOKEN, anyone who reaches the port may scrape (docs/decisions.md)."""
    secret = request.app.state.settings.app.metrics_token
    if secret is None:
        return True
    presented = presented_token(request) or ""
    return hmac.compare_digest(presented.encode(), secret.get_secret_value().encode())


async def metrics(request: Request) -> Response:
    if not _may_scrape(request):
        return error_response(
            401, ["/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'"], {"WWW-Authenticate": "Bearer"}
        )
    try:
        data = await _snapshot(request)
        totals = await store_of(request).run(sessions.stats(None))
        fleet = await store_of(request).run(health.read_metrics([m.name for m in FLEET]))
    except RedisError:
        return Response("# redis unreachable\n", status_code=503, media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry()

    class Snapshot:
        def collect(self) -> Any:
            g = GaugeMetricFamily("chatgw_sessions", "Sessions by state (O(1) counters)", labels=["state"])
            for name, value in totals.items():
                g.add_metric([name], value)
            yield g
            q = GaugeMetricFamily("chatgw_queue_jobs", "RQ jobs per queue and state", labels=["queue", "state"])
            for queue, states in data["queues"].items():
                for state, value in states.items():
                    q.add_metric([queue, state], value)
            yield q
            yield GaugeMetricFamily("chatgw_workers", "Worker processes seen in the last 30 s", value=data["workers"])
            yield GaugeMetricFamily(
                "chatgw_turns_pending", "Sessions with a turn queued or running", value=data["turns_pending"]
            )
            c = GaugeMetricFamily("chatgw_events", "Event counters (monotonic)", labels=["event"])
            for name, value in data["counters"].items():
                c.add_metric([name], value)
            yield c
            yield GaugeMetricFamily(
                "chatgw_llm_offline",
                "1 when the offline responder is in use",
                value=int(data["llm_provider"] == "offline"),
            )

    registry.register(Snapshot())
    registry.register(Fleet(fleet))
    body = generate_latest(registry) + generate_latest(metrics_of(request).registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/healthz",
        healthz,
        "Process is up",
        None,
        "health",
        envelope=False,
        response={"type": "object"},
        errors=(),
    ),
    Endpoint(
        "GET",
        "/readyz",
        readyz,
        "Redis reachable, workers seen recently, queue depth",
        None,
        "health",
        envelope=False,
        response={"type": "object"},
        errors=(503,),
    ),
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics: this process's HTTP, webhook and SSE figures, the fleet's turns, LLM, "
        "deliveries and events (from Redis), sessions and queues. Open unless METRICS_TOKEN is set "
        "(then `Authorization: Bearer <METRICS_TOKEN>`)",
        None,
        "health",
        envelope=False,
        content_type="text/plain",
        response={"type": "string"},
        errors=(401, 503),
    ),
]
