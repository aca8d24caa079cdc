"""LLM-bound capacity (SPEC §13): turns in flight per GiB of worker memory with a 2 s LLM.

A fake OpenAI-compatible server answers every request after `--latency` seconds (asyncio
sleep, so it holds thousands of requests without CPU). One `chatgw worker --concurrency C`
process answers N customers who all wrote at once; we sample the worker's RSS and the
number of LLM requests in flight. Baseline for the ratio: one RQ SimpleWorker holds one
turn (≈25 turns/GiB at ≈40 MiB per process, SPEC §13).

    python -m bench.capacity [--concurrency 200] [--customers 400] [--latency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent_core.models import AgentSpec, Channel
from agent_core.store import Store, agents, keys, sessions
from agent_core.store.connection import sync_client
from gateway.cli.redis_server import EmbeddedRedis, free_port
from workers.queues import turn_job

ROOT = Path(__file__).resolve().parent.parent


class SlowLLM:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.peak = 0
        self.done = 0
        self.port = free_port()

        async def chat(request: Request) -> JSONResponse:
            await request.body()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.latency)
            finally:
                self.in_flight -= 1
                self.done += 1
            return JSONResponse(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": "bench",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", backlog=4096, limit_concurrency=None
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(concurrency: int, customers: int, latency: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False) as redis_server,
    ):
        llm = SlowLLM(latency)
        store = Store(sync_client(redis_server.url))
        agent = store.run(agents.create(AgentSpec(name="Capacity", debounce_ms=0))).agent
        assert agent is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TWILIO_"))}
        env.update(
            REDIS_URL=redis_server.url,
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=f"http://127.0.0.1:{llm.port}/v1",
            LOG_LEVEL="WARNING",
            LLM_TIMEOUT_S="60",
        )
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "chatgw"), "worker", "--concurrency", str(concurrency)], env=env, cwd=tmp
        )
        time.sleep(3)
        idle = rss_mib(worker.pid)
        msg = sessions.new_message("customer", "hello", created_at="2026-01-01T00:00:00.000Z")
        started = time.monotonic()
        for i in range(customers):
            store.run(
                sessions.ingest(
                    customer_id=f"cap-{i}", channel=Channel.api, message=msg, job=turn_job(), agent_id=agent.id
                )
            )
        peak_rss, samples = idle, []
        while llm.done < customers and time.monotonic() - started < 120:
            peak_rss = max(peak_rss, rss_mib(worker.pid))
            samples.append(llm.in_flight)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        pending = store.redis.zcard(keys.TURNS_PENDING)
        worker.terminate()
        worker.wait(30)
        llm.server.should_exit = True
        in_flight = llm.peak
        return {
            "concurrency": concurrency,
            "customers": customers,
            "llm_latency_s": latency,
            "answered": llm.done,
            "elapsed_s": round(elapsed, 2),
            "turns_per_s": round(llm.done / elapsed, 1),
            "peak_in_flight": in_flight,
            "idle_rss_mib": round(idle, 1),
            "peak_rss_mib": round(peak_rss, 1),
            "turns_in_flight_per_gib": round(in_flight / (peak_rss / 1024), 1),
            "pending_left": pending,
            "baseline_turns_per_gib": 25,
            "ratio_vs_baseline": round(in_flight / (peak_rss / 1024) / 25, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    result = run(args.concurrency, args.customers, args.latency)
    for k, v in result.items():
        print(f"  {k:26s} {v}")


if __name__ == "__main__":
    main()
