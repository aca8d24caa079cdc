"""Health, readiness and Prometheus metrics (SPEC §6.2)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent_core.store import Batch, Cmd, keys, sessions
from gateway.api.chat import store_of
from gateway.api.routing import Endpoint
from workers.queues import ALL_QUEUES

WORKER_FRESH_S = 30


async def healthz(request: Request) -> Response:
    return JSONResponse({"success": True, "data": {"status": "ok"}})


def _queue_cmds() -> list[Cmd]:
    cmds = []
    for q in ALL_QUEUES:
        cmds.append(Cmd("LLEN", f"rq:queue:{q}"))
        cmds.append(Cmd("ZCARD", f"rq:wip:{q}"))
        cmds.append(Cmd("ZCARD", f"rq:failed:{q}"))
    return cmds


async def _snapshot(request: Request) -> dict[str, Any]:
    store = store_of(request)
    now = time.time()
    replies = await store.run(
        _batch(
            Cmd("PING"),
            Cmd("ZCOUNT", keys.WORKERS_SEEN, now - WORKER_FRESH_S, "+inf"),
            Cmd("ZCARD", keys.TURNS_PENDING),
            Cmd("HGETALL", keys.COUNTERS),
            *_queue_cmds(),
        )
    )
    queues = {}
    for i, q in enumerate(ALL_QUEUES):
        depth, started, failed = replies[4 + i * 3 : 7 + i * 3]
        queues[q] = {"queued": int(depth), "started": int(started), "failed": int(failed)}
    return {
        "redis": "ok",
        "workers": int(replies[1]),
        "turns_pending": int(replies[2]),
        "counters": {k: int(v) for k, v in replies[3].items()},
        "queues": queues,
        "llm_provider": request.app.state.settings.llm.provider,
    }


def _batch(*cmds: Cmd) -> Any:
    replies = yield Batch(*cmds)
    return replies


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


async def metrics(request: Request) -> Response:
    try:
        data = await _snapshot(request)
        totals = await store_of(request).run(sessions.stats(None))
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
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


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
        "Prometheus metrics",
        None,
        "health",
        envelope=False,
        content_type="text/plain",
        response={"type": "string"},
        errors=(503,),
    ),
]
