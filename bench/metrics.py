"""What an observation costs: the web process's per-request metrics and a worker's tally.

Micro-benchmarks in one process (CPU time per operation, best of `--repeat` runs):
- the edge layer (`gateway.edge.Edge`: metrics, request id, body limit) around a bare ASGI app, against the
  bare app alone: the extra CPU every request pays (route label, status, histogram);
- one webhook outcome (a cached prometheus-client counter child);
- one `Tally.observe` of a worker figure (in memory), and one flush of a turn's figures
  (turn, queue wait, LLM, delivery: 8 hash fields, one pipelined round trip) to a private
  redis-server.

    python -m bench.metrics [--n 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_core.metrics import DELIVERY_SECONDS, LLM_SECONDS, TURN_QUEUE_WAIT_SECONDS, TURN_SECONDS, Tally
from agent_core.store import Store
from agent_core.store.connection import sync_client
from gateway.cli.redis_server import EmbeddedRedis
from gateway.edge import Edge
from gateway.metrics import WebMetrics

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/xml")]}
BODY = {"type": "http.response.body", "body": b"<Response/>"}


class _Route:
    path = "/twilio/messages"


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _Route  # what Starlette's router leaves in the scope
    await send(START)
    await send(BODY)


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _asgi_us(app: Any, n: int) -> float:
    """CPU µs per request through `app` (a POST answered 200 with a small body)."""

    async def run() -> float:
        began = time.process_time()
        for _ in range(n):
            await app({"type": "http", "method": "POST", "path": "/twilio/messages"}, _receive, _send)
        return (time.process_time() - began) / n * 1e6

    return asyncio.run(run())


def _per_call_us(fn: Callable[[], None], n: int) -> float:
    began = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - began) / n * 1e6


def _turn(tally: Tally) -> None:
    tally.observe(TURN_QUEUE_WAIT_SECONDS, 0.004)
    tally.observe(TURN_SECONDS, 0.02, "replied")
    tally.observe(LLM_SECONDS, 0.01, "offline", "chat", "ok")
    tally.observe(DELIVERY_SECONDS, 0.003, "sent")


def run(n: int = 200_000, repeat: int = 5) -> dict[str, float]:
    web = WebMetrics()
    timed = Edge(_bare, web, max_bytes=1 << 20)
    tally = Tally()
    out = {
        "bare_asgi_us": min(_asgi_us(_bare, n) for _ in range(repeat)),
        "with_http_metrics_us": min(_asgi_us(timed, n) for _ in range(repeat)),
        "histogram_observe_us": min(
            _per_call_us(lambda: web.request("POST", "/twilio/messages", 200, 0.0004), n) for _ in range(repeat)
        ),
        "tally_observe_us": min(
            _per_call_us(lambda: tally.observe(TURN_SECONDS, 0.02, "replied"), n) for _ in range(repeat)
        ),
    }
    out["http_metrics_overhead_us"] = out["with_http_metrics_us"] - out["bare_asgi_us"]
    scope: Any = {"route": _Route}
    out["webhook_outcome_us"] = min(_per_call_us(lambda: web.webhook(scope, "accepted"), n) for _ in range(repeat))
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False).start()
        try:
            client = sync_client(server.url)
            store = Store(client)
            flushes = max(n // 100, 100)

            def flush() -> None:
                _turn(tally)
                tally.flush(store)

            out["turn_flush_us"] = min(_per_call_us(flush, flushes) for _ in range(repeat))
            client.close()
        finally:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="operations per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    args = parser.parse_args(argv)
    figures = run(args.n, args.repeat)
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:8.2f} µs CPU")


if __name__ == "__main__":
    main()
