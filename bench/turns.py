"""Turn overhead, LLM excluded: how fast a worker answers queued turns, and its memory.

What runs: a private redis-server, one `chatgw web` (used to queue the messages; idle but
subscribed to turn notices while the workers drain) and `chatgw worker` processes with the
offline responder (deterministic, ~zero latency), so a turn's time is the gateway's own:
RQ dequeue, turn lock, session/thread reads, prompt building, commit, notices.

For each configuration (1 process x concurrency 1, 1 x 4, 2 processes x 1):
1. Idle RSS: start the worker process on empty queues, wait until its RQ workers are
   registered plus a second, read VmRSS from /proc (then stop it).
2. Fill: with no worker running, send N `POST /v1/chat/inbound?wait=0` from N distinct
   customers (N sessions, N turn jobs queued); check `rq:queue:turns` and
   `gw:turns:pending` both hold N.
3. Drain: move the queue aside, start the worker(s), wait until all their RQ workers are
   registered, put the queue back; the clock starts when the first job leaves the queue and
   stops when `gw:turns:pending` and `rq:queue:turns` are both empty (a turn releases its
   pending slot when its reply is committed). turns/s = N / that time; ms per turn is its
   inverse. Worker CPU per turn and Redis commands per turn are reported too (the poller's
   own commands subtracted). Then the census checks every session got its reply.
4. RQ's floor in the same run: N no-op jobs through a plain `SimpleWorker` (`bench.rqfloor`,
   its own process); the turn figures are also given as a ratio to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench import load
from bench.stack import (
    ROOT,
    Stack,
    cpu_seconds,
    create_agent,
    redis_commands,
    redis_pid,
    rss_mib,
    stack,
    wait_workers,
)

CONFIGS: tuple[tuple[int, int], ...] = ((1, 1), (1, 4), (2, 1))
POLL_S = 0.002
QUEUE_KEY = "rq:queue:turns"
HELD_KEY = "bench:held:turns"


def rq_floor(st: Stack, jobs: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rqfloor", "--redis-url", st.redis_url, "--jobs", str(jobs)],
        cwd=ROOT,
        env=st.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def idle_rss(st: Stack, concurrency: int, settle_s: float = 1.0) -> float:
    worker = st.start_worker(concurrency)
    time.sleep(settle_s)
    rss = rss_mib(worker.pid)
    st.stop_proc(worker)
    return round(rss, 1)


def census(st: Stack, prefix: str) -> dict[str, int]:
    rc = st.client()
    sids = [k.split(":", 2)[2] for k in rc.scan_iter("gw:s:*", count=1000)]
    pipe = rc.pipeline(transaction=False)
    for sid in sids:
        pipe.hmget(f"gw:s:{sid}", "customer_id", "last_cust_seq", "answered_seq", "seq")
    rows = [r for r in pipe.execute() if (r[0] or "").startswith(prefix)]
    return {
        "sessions": len(rows),
        "answered": sum(int(r[2] or 0) >= int(r[1] or 0) > 0 for r in rows),
        "with_two_messages": sum(int(r[3] or 0) == 2 for r in rows),
    }


def drain(st: Stack, processes: int, concurrency: int, n: int, pids: dict[str, int]) -> dict[str, Any]:
    rc = st.client()
    # Hold the queue aside while the worker processes start (imports take a second), so all
    # of them begin together and start-up time is not counted as turn time.
    rc.rename(QUEUE_KEY, HELD_KEY)
    workers = [st.start_worker(concurrency, wait_ready=False) for _ in range(processes)]
    for w in workers:
        wait_workers(rc, w)
    time.sleep(0.5)
    cmds0 = redis_commands(rc)
    rc.rename(HELD_KEY, QUEUE_KEY)
    polls = 0
    t_first: float | None = None
    cpu_first: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        pipe = rc.pipeline(transaction=False)
        pipe.llen(QUEUE_KEY)
        pipe.zcard("gw:turns:pending")
        queued, pending = pipe.execute()
        polls += 1
        now = time.perf_counter()
        if t_first is None and queued < n:
            t_first = now
            cpu_first = {f"worker{i}": cpu_seconds(w.pid) for i, w in enumerate(workers)}
            cpu_first |= {k: cpu_seconds(pid) for k, pid in pids.items()}
        if queued == 0 and pending == 0:
            break
        if any(not w.alive() for w in workers):
            raise RuntimeError("a worker exited during the drain; see its log")
        time.sleep(POLL_S)
    else:
        raise RuntimeError("turns did not drain within 600 s")
    assert t_first is not None
    elapsed = now - t_first
    cpu_last = {f"worker{i}": cpu_seconds(w.pid) for i, w in enumerate(workers)}
    cpu_last |= {k: cpu_seconds(pid) for k, pid in pids.items()}
    cmds = redis_commands(rc) - cmds0 - 2 * polls - 2
    cpu = {k: round(cpu_last[k] - cpu_first[k], 3) for k in cpu_last}
    worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
    time.sleep(1.0)
    rss_after = [round(rss_mib(w.pid), 1) for w in workers]
    for w in workers:
        st.stop_proc(w)
    failed = int(rc.zcard("rq:failed:turns"))  # type: ignore[arg-type]
    return {
        "turns": n,
        "elapsed_s": round(elapsed, 3),
        "turns_per_s": round(n / elapsed, 1),
        "ms_per_turn": round(elapsed / n * 1000, 3),
        "worker_cpu_ms_per_turn": round(worker_cpu / n * 1000, 3),
        "cpu_s": cpu,
        "redis_cmds_per_turn": round(cmds / n, 1),
        "rss_after_mib": rss_after,
        "failed_jobs": failed,
    }


def run(turns: int = 2_000, *, configs: tuple[tuple[int, int], ...] = CONFIGS, log: Any = print) -> dict[str, Any]:
    with stack() as st:
        token = st.admin_token()
        web, base = st.start_web()
        agent_id = create_agent(base, token)
        pids = {"web": web.pid, "redis": redis_pid(st)}
        log(f"turns: {turns} turns per configuration; offline responder (no LLM latency)")

        floor = rq_floor(st, turns)
        log(
            f"  RQ floor (no-op job, plain SimpleWorker): {floor['ms_per_job']:.2f} ms/job, "
            f"{floor['redis_cmds_per_job']:.0f} Redis cmds/job; enqueue {floor['enqueue_us_per_job']:.0f} µs"
        )

        results: dict[str, Any] = {}
        rss_idle: dict[str, float] = {}
        for processes, concurrency in configs:
            key = f"{processes}x{concurrency}"
            if f"c={concurrency}" not in rss_idle:
                rss_idle[f"c={concurrency}"] = idle_rss(st, concurrency)
            prefix = f"turns-{key}-"
            body = json.dumps({"agent_uuid": agent_id, "customer_id": prefix + load.PLACEHOLDER, "content": "Hi!"})
            target = load.Target(
                base + "/v1/chat/inbound?wait=0",
                "POST",
                {"API-Token": token, "Content-Type": "application/json"},
                body,
                customers=turns,
            )
            fill = load.run(target, concurrency=16, requests=turns, engine="python")
            rc = st.client()
            queued, pending = int(rc.llen("rq:queue:turns")), int(rc.zcard("gw:turns:pending"))  # type: ignore[arg-type]
            if queued != turns or pending != turns:
                log(f"  warning: after filling, {queued} jobs queued and {pending} turns pending (expected {turns})")
            r = drain(st, processes, concurrency, queued, pids)
            r["fill"] = {"rps": fill["rps"], "non_2xx": fill["non_2xx"], "errors": fill["errors"]}
            r["queued_before"] = queued
            r["census"] = census(st, prefix)
            r["vs_rq_floor"] = round(r["ms_per_turn"] / floor["ms_per_job"], 2)
            r["cpu_vs_rq_floor"] = round(r["worker_cpu_ms_per_turn"] / floor["cpu_ms_per_job"], 2)
            results[key] = r
            log(
                f"  {processes} proc x conc {concurrency}: {r['turns_per_s']:7.1f} turns/s  "
                f"{r['ms_per_turn']:6.2f} ms/turn ({r['vs_rq_floor']:.2f}x RQ floor)  "
                f"worker CPU {r['worker_cpu_ms_per_turn']:.2f} ms/turn  {r['redis_cmds_per_turn']:.0f} cmds/turn  "
                f"answered {r['census']['answered']}/{turns}  failed {r['failed_jobs']}"
            )
        log(f"  idle worker RSS: {rss_idle}")
        base_tps = results[f"{configs[0][0]}x{configs[0][1]}"]["turns_per_s"]
        scaling = {k: round(v["turns_per_s"] / base_tps, 2) for k, v in results.items()}
        return {
            "turns": turns,
            "rq_floor": floor,
            "configs": results,
            "scaling_vs_1x1": scaling,
            "idle_rss_mib": rss_idle,
            "log_findings": st.log_findings(),
        }
