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
import os
import signal
import time
from typing import Any
from urllib.parse import urlencode

from bench import load
from bench.stack import (
    Stack,
    cpu_delta,
    cpu_snapshot,
    create_agent,
    redis_commands,
    redis_pid,
    stack,
)

TEXT = "Hello, I ordered a blue jacket last week and it has not arrived yet. Can you check?"


def _gateway_target(base: str, token: str, agent_id: str, customers: int) -> load.Target:
    body = json.dumps({"agent_uuid": agent_id, "customer_id": f"bench-{load.PLACEHOLDER}", "content": TEXT})
    headers = {"API-Token": token, "Content-Type": "application/json"}
    return load.Target(base + "/v1/chat/inbound?wait=0", "POST", headers, body, customers)


def _bare_targets(base: str, customers: int) -> tuple[load.Target, load.Target]:
    json_body = json.dumps({"agent_uuid": "agent_x", "customer_id": f"bench-{load.PLACEHOLDER}", "content": TEXT})
    bare_json = load.Target(base + "/json", "POST", {"Content-Type": "application/json"}, json_body, customers)
    form = urlencode(
        {
            "MessageSid": "SM" + "0" * 32,
            "AccountSid": "AC" + "0" * 32,
            "From": "+1555000",
            "To": "+15550001111",
            "Body": TEXT,
            "NumMedia": "0",
        }
    ).replace("%2B1555000", "%2B1555000" + load.PLACEHOLDER)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x" * 28}
    bare_twiml = load.Target(base + "/twiml", "POST", headers, form, customers)
    return bare_json, bare_twiml


def _measure(
    target: load.Target,
    pids: dict[str, int],
    server: str,
    st: Stack,
    **kwargs: Any,
) -> dict[str, Any]:
    rc = st.client()
    cmds0 = redis_commands(rc)
    cpu0 = cpu_snapshot(pids)
    result = load.run(target, **kwargs)
    cpu = cpu_delta(cpu0, cpu_snapshot(pids))
    cmds = redis_commands(rc) - cmds0
    n = max(result["requests"], 1)
    result["cpu_s"] = cpu
    result["server_cpu_us_per_req"] = round(cpu[server] / n * 1e6, 1)
    result["redis_cmds_per_req"] = round(cmds / n, 1)
    return result


def _backlog(st: Stack) -> dict[str, int]:
    rc = st.client()
    return {
        "turns_queued": int(rc.llen("rq:queue:turns")),  # type: ignore[arg-type]
        "turns_pending": int(rc.zcard("gw:turns:pending")),  # type: ignore[arg-type]
        "turns_failed": int(rc.zcard("rq:failed:turns")),  # type: ignore[arg-type]
    }


def _wait_drained(st: Stack, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        b = _backlog(st)
        if b["turns_queued"] == 0 and b["turns_pending"] == 0:
            return round(time.monotonic() - start, 2)
        time.sleep(0.05)
    return None


def _message_census(st: Stack, prefix: str) -> dict[str, int]:
    """Customer messages stored, agent replies and unanswered sessions for `prefix` customers."""
    rc = st.client()
    sids = [k.split(":", 2)[2] for k in rc.scan_iter("gw:s:*", count=1000)]
    pipe = rc.pipeline(transaction=False)
    for sid in sids:
        pipe.hmget(f"gw:s:{sid}", "customer_id", "last_cust_seq", "answered_seq")
    rows = pipe.execute()
    mine = [(sid, row) for sid, row in zip(sids, rows, strict=True) if (row[0] or "").startswith(prefix)]
    customer = agent = unanswered = 0
    for sid, row in mine:
        if int(row[2] or 0) < int(row[1] or 0):
            unanswered += 1
        for raw in rc.hvals(f"gw:m:{sid}"):  # type: ignore[union-attr]
            role = json.loads(raw).get("role")
            customer += role == "customer"
            agent += role == "agent"
    return {"sessions": len(mine), "customer_messages": customer, "agent_replies": agent, "unanswered": unanswered}


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
        gateway = _gateway_target(base, token, agent_id, customers)
        bare_json, bare_twiml = _bare_targets(bbase, customers)
        pids = {"web": web.pid, "worker": worker.pid, "redis": redis_pid(st), "baseline": baseline.pid}
        engine_used = "wrk" if engine == "wrk" or (engine == "auto" and load.have_wrk()) else "python"
        log(f"ingest: load generator {engine_used}; {duration_s:g}s per run; worker concurrency {worker_concurrency}")

        acked = 0
        warmup: dict[str, Any] = {}
        for label, target in (("bare_json", bare_json), ("gateway", gateway), ("bare_twiml", bare_twiml)):
            r = load.run(target, concurrency=16, duration_s=warmup_s, engine=engine)
            warmup[label] = {k: r[k] for k in ("rps", "statuses", "non_2xx", "errors")}
            if target is gateway:
                acked += sum(v for k, v in r["statuses"].items() if k.startswith("2"))

        runs: dict[str, dict[str, Any]] = {}
        for c in concurrencies:
            for label, target, server in (
                ("bare_json", bare_json, "baseline"),
                ("gateway", gateway, "web"),
                ("gateway_worker_paused", gateway, "web"),
                ("bare_twiml", bare_twiml, "baseline"),
            ):
                paused = label == "gateway_worker_paused"
                if paused:  # SIGSTOP: the web process alone, without the worker's CPU use
                    os.kill(worker.pid, signal.SIGSTOP)
                try:
                    r = _measure(target, pids, server, st, concurrency=c, duration_s=duration_s, engine=engine)
                finally:
                    if paused:
                        os.kill(worker.pid, signal.SIGCONT)
                runs[f"{label}@c{c}"] = r
                if target is gateway:
                    acked += sum(v for k, v in r["statuses"].items() if k.startswith("2"))
                    r["backlog_after"] = _backlog(st)
                log(
                    f"  {label:<21} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                    f"p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non_2xx']}  errors {r['errors'] or 0}"
                )

        ratios = {
            f"c{c}": {
                "gateway_vs_bare_json_rps": round(runs[f"gateway@c{c}"]["rps"] / runs[f"bare_json@c{c}"]["rps"], 3),
                "gateway_vs_bare_twiml_rps": round(runs[f"gateway@c{c}"]["rps"] / runs[f"bare_twiml@c{c}"]["rps"], 3),
                "gateway_worker_paused_vs_bare_json_rps": round(
                    runs[f"gateway_worker_paused@c{c}"]["rps"] / runs[f"bare_json@c{c}"]["rps"], 3
                ),
                "server_cpu_per_req_gateway_vs_bare_json": round(
                    runs[f"gateway@c{c}"]["server_cpu_us_per_req"]
                    / max(runs[f"bare_json@c{c}"]["server_cpu_us_per_req"], 0.1),
                    2,
                ),
            }
            for c in concurrencies
        }

        fixed: dict[str, Any] = {}
        for label in ("gateway", "gateway_worker_paused"):
            best = max(runs[f"{label}@c{c}"]["rps"] for c in concurrencies)
            rate = round(0.7 * best, 1)
            paused = label == "gateway_worker_paused"
            if paused:
                os.kill(worker.pid, signal.SIGSTOP)
            try:
                fx = _measure(
                    gateway,
                    pids,
                    "web",
                    st,
                    concurrency=max(concurrencies),
                    duration_s=duration_s,
                    rate=rate,
                    engine="python",
                )
            finally:
                if paused:
                    os.kill(worker.pid, signal.SIGCONT)
            acked += sum(v for k, v in fx["statuses"].items() if k.startswith("2"))
            fx["backlog_after"] = _backlog(st)
            fixed[label] = {"of_max_rps": best, "fraction": 0.7, **fx}
            log(
                f"  {label:<21} rate {rate:.0f}/s (70% of {best:.0f}): got {fx['rps']:.0f}/s  "
                f"p50 {fx['p50_ms']:.2f} ms  p99 {fx['p99_ms']:.2f} ms (from the write: p99 "
                f"{fx['service_p99_ms']:.2f} ms)  non-2xx {fx['non_2xx']}"
            )

        backlog = _backlog(st)
        drain_s = _wait_drained(st, timeout_s=120)
        census = _message_census(st, "bench-")
        census["acked_2xx"] = acked
        log(f"  drain after load: {drain_s} s; census {census}")
        return {
            "engine": engine_used,
            "duration_s": duration_s,
            "customers": customers,
            "worker_concurrency": worker_concurrency,
            "warmup": warmup,
            "runs": runs,
            "ratios": ratios,
            "fixed_rate": fixed,
            "backlog_at_end_of_load": backlog,
            "drain_s": drain_s,
            "backlog_after_drain": _backlog(st),
            "census": census,
            "log_findings": st.log_findings(),
        }
