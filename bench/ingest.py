"""Ingest: `POST /v1/chat/inbound?wait=0` against a bare Starlette endpoint, same run.

What runs (all on this machine's cores, shared): a private redis-server, one `chatgw web`
(uvicorn, one process), one `chatgw worker --concurrency 4` draining the turns the
messages queue (offline responder), the bare baseline (`bench.baseline`, one process; idle
while the gateway is measured and vice versa) and the load generator (`bench.load`, its own
process: wrk when installed, else asyncio).

Measured:
1. Closed loop at each concurrency (16, 64): bare JSON POST, gateway inbound, gateway
   inbound with the worker paused (SIGSTOP, so the web process gets the cores the worker
   would use; turns just queue), bare TwiML POST, each for `duration` seconds, interleaved
   so drift hits them alike. Reported: requests/s, p50/p99, non-2xx, CPU seconds used by
   each process, server CPU per request, and the ratio gateway / bare-JSON requests/s
   (SPEC §13: ingest ≥ 0.20x the bare endpoint).
2. Open loop (asyncio engine, fixed rate) at 70% of the best gateway requests/s from (1),
   once with the worker running and once with it paused (at 70% of the paused maximum):
   p50/p99 measured from each request's scheduled start (SPEC §13: p99 ≤ 50 ms at 70%),
   plus p99 from the moment the request was written and the load generator's own CPU.
3. After the load: queue backlog, time for the worker to drain it, failed jobs, and a
   no-loss check (customer messages stored vs 2xx answers the load generator counted).

Customers: `customers` distinct ids, round-robin, so each request lands on a realistic
session (1,000 open sessions receiving messages; at most one turn per session pending).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from bench import load
from bench.runner import GATEWAY, PAUSED, TEXT, FixedRequests, IngestRunner, backlog, engine_name, ratios
from bench.stack import create_agent, redis_pid, stack
from channels.twilio.forms import inbound_form

BARE_JSON, BARE_TWIML = "bare_json", "bare_twiml"


def _gateway_target(base: str, token: str, agent_id: str, customers: int) -> load.Target:
    body = json.dumps({"agent_uuid": agent_id, "customer_id": f"bench-{load.PLACEHOLDER}", "content": TEXT})
    headers = {"API-Token": token, "Content-Type": "application/json"}
    return load.Target(base + "/v1/chat/inbound?wait=0", "POST", headers, body, customers)


def _bare_targets(base: str, customers: int) -> dict[str, load.Target]:
    json_body = json.dumps({"agent_uuid": "agent_x", "customer_id": f"bench-{load.PLACEHOLDER}", "content": TEXT})
    bare_json = load.Target(base + "/json", "POST", {"Content-Type": "application/json"}, json_body, customers)
    form = inbound_form(
        message_sid="SM" + "0" * 32, account_sid="AC" + "0" * 32, from_="+1555000", to="+15550001111", body=TEXT
    )
    body = urlencode(form).replace("From=%2B1555000", "From=%2B1555000" + load.PLACEHOLDER)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x" * 28}
    bare_twiml = load.Target(base + "/twiml", "POST", headers, body, customers)
    return {BARE_JSON: bare_json, BARE_TWIML: bare_twiml}


def run(
    duration_s: float = 8.0,
    *,
    concurrencies: tuple[int, ...] = (16, 64),
    customers: int = 1_000,
    warmup_s: float = 2.0,
    worker_concurrency: int = 4,
    engine: str = "auto",
    log: Any = print,
) -> dict[str, Any]:
    with stack() as st:
        token = st.admin_token()
        web, base = st.start_web()
        agent_id = create_agent(base, token)
        worker = st.start_worker(worker_concurrency)
        baseline, bbase = st.start_baseline()
        runner = IngestRunner(
            st,
            pids={"web": web.pid, "worker": worker.pid, "redis": redis_pid(st), "baseline": baseline.pid},
            worker_pid=worker.pid,
            gateway=FixedRequests(_gateway_target(base, token, agent_id, customers)),
            baselines=_bare_targets(bbase, customers),
            engine=engine,
            log=log,
        )
        engine_used = engine_name(engine)
        log(f"ingest: load generator {engine_used}; {duration_s:g}s per run; worker concurrency {worker_concurrency}")
        warmup = runner.warm_up((BARE_JSON, GATEWAY, BARE_TWIML), warmup_s)
        runs = runner.closed_loops(concurrencies, (BARE_JSON, GATEWAY, PAUSED, BARE_TWIML), duration_s)
        fixed = runner.open_loops(concurrencies, duration_s)
        after = runner.drain("bench-", timeout_s=120)
        log(f"  drain after load: {after['drain_s']} s; census {after['census']}")
        return {
            "engine": engine_used,
            "duration_s": duration_s,
            "customers": customers,
            "worker_concurrency": worker_concurrency,
            "warmup": warmup,
            "runs": runs,
            "ratios": ratios(
                runs,
                concurrencies,
                rps=((GATEWAY, BARE_JSON), (GATEWAY, BARE_TWIML), (PAUSED, BARE_JSON)),
                cpu=("server_cpu_per_req_gateway_vs_bare_json", BARE_JSON),
            ),
            "fixed_rate": fixed,
            **after,
            "backlog_after_drain": backlog(st),
            "log_findings": st.log_findings(),
        }
