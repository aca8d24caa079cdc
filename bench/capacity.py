"""LLM-bound capacity (SPEC §13): turns in flight per GiB of worker memory with a 2 s LLM.

A fake OpenAI-compatible server answers every request after `--latency` seconds (asyncio
sleep, so it holds thousands of requests without CPU). One `chatgw worker` process (its
default settings unless `--concurrency C`) answers N customers who all wrote at once; we
sample the worker's RSS and the number of LLM requests in flight, and time until every
turn is committed. The same run repeats with `--concurrency 4` (the former default), or
with another source tree's worker (`--baseline-code`, e.g. a `git worktree` of an older
commit).

    python -m bench.capacity [--concurrency C] [--customers 100] [--latency 2] [--baseline-code DIR]
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

from agent_core.models import AgentSpec, Channel, Role
from agent_core.store import Store, agents, keys, sessions
from agent_core.store.connection import sync_client
from gateway.cli.redis_server import EmbeddedRedis, free_port
from workers.rqwire import RQJobFormat

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


def run(concurrency: int | None, customers: int, latency: float, *, code: Path = ROOT) -> dict[str, Any]:
    """One worker process (`--concurrency` only when given: else the default) answering
    `customers` who all wrote at once. `code`: the source tree whose worker runs."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False) as redis_server,
    ):
        llm = SlowLLM(latency)
        store = Store(sync_client(redis_server.url), RQJobFormat())
        agent = store.run(agents.create(AgentSpec(name="Capacity", debounce_ms=0))).agent
        assert agent is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TWILIO_", "WORKER_"))}
        env.update(
            REDIS_URL=redis_server.url,
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=f"http://127.0.0.1:{llm.port}/v1",
            LOG_LEVEL="WARNING",
            LLM_TIMEOUT_S="60",
            PYTHONPATH=str(code),
        )
        cmd = [sys.executable, "-m", "gateway.cli", "worker"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        worker = subprocess.Popen(cmd, env=env, cwd=tmp)
        try:
            time.sleep(3)
            idle = rss_mib(worker.pid)
            msg = sessions.new_message(Role.customer, "hello", created_at="2026-01-01T00:00:00.000Z")
            # One turn first: the SDK's first call imports and builds its types (≈ 1 s of CPU
            # once per process), which is not what a turn costs.
            store.run(sessions.ingest(customer_id="warm-up", channel=Channel.api, message=msg, agent_id=agent.id))
            warm_deadline = time.monotonic() + 30
            while (llm.done < 1 or store.redis.zcard(keys.TURNS_PENDING)) and time.monotonic() < warm_deadline:
                time.sleep(0.05)
            llm.done = llm.peak = 0
            cpu0 = cpu_s(worker.pid)
            started = time.monotonic()
            for i in range(customers):
                store.run(sessions.ingest(customer_id=f"cap-{i}", channel=Channel.api, message=msg, agent_id=agent.id))
            peak_rss, samples = idle, []
            answered_s = None
            while time.monotonic() - started < 120:
                peak_rss = max(peak_rss, rss_mib(worker.pid))
                samples.append(llm.in_flight)
                if llm.done >= customers and store.redis.zcard(keys.TURNS_PENDING) == 0:
                    answered_s = time.monotonic() - started
                    break
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            cpu = cpu_s(worker.pid) - cpu0
            pending = store.redis.zcard(keys.TURNS_PENDING)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        llm.server.should_exit = True
        in_flight = llm.peak
        return {
            "concurrency": "default" if concurrency is None else concurrency,
            "customers": customers,
            "llm_latency_s": latency,
            "answered": llm.done,
            "all_answered_s": None if answered_s is None else round(answered_s, 2),
            "elapsed_s": round(elapsed, 2),
            "turns_per_s": round(llm.done / elapsed, 1),
            "worker_cpu_ms_per_turn": round(cpu * 1000 / max(1, llm.done), 2),
            "peak_in_flight": in_flight,
            "idle_rss_mib": round(idle, 1),
            "idle_rss_mb": round(idle * 1.048576, 1),
            "peak_rss_mib": round(peak_rss, 1),
            "turns_in_flight_per_gib": round(in_flight / (peak_rss / 1024), 1),
            "pending_left": pending,
        }


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=None, help="default: the worker's own default")
    parser.add_argument("--baseline-concurrency", type=int, default=4, help="the same run with this (0: none)")
    parser.add_argument(
        "--baseline-code", type=Path, default=None, help="a source tree (e.g. `git worktree`) to run as the baseline"
    )
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    runs = [("this", run(args.concurrency, args.customers, args.latency))]
    if args.baseline_code is not None:
        runs.append(("baseline code", run(args.concurrency, args.customers, args.latency, code=args.baseline_code)))
    elif args.baseline_concurrency:
        runs.append(("baseline", run(args.baseline_concurrency, args.customers, args.latency)))
    keys_ = list(runs[0][1])
    print(f"  {'':26s} " + " ".join(f"{name:>14s}" for name, _ in runs))
    for k in keys_:
        print(f"  {k:26s} " + " ".join(f"{r[k]!s:>14s}" for _, r in runs))


if __name__ == "__main__":
    main()
