"""A throttled backlog (issue 13 item 1): N customers write to one agent number at once with
the default per-sender rate (`TWILIO_MESSAGES_PER_SECOND=10`), so N replies wait for that
sender's slots.

Processes as in bench/webhook.py (redis-server, `chatgw web`, one default `chatgw worker`,
the fake Twilio, the load generator). Measured, in one run:

- **idle**: worker CPU (% of a core) over `--window` seconds before the burst: the baseline.
- **burst**: N signed webhooks to agent number A from N new customers, as fast as they go.
- **turns done**: how long after the burst A's N turns were all answered (their replies
  stored, waiting for slots): turns are not throttled, only sends are.
- **other sender alone** (the same-run baseline, before the burst): new customers write to
  agent number B at `--rate`/s for half of `--other-seconds`: webhook → B's reply at the fake
  Twilio.
- **other sender**: then, while A's replies wait, new customers write to agent number B at
  `--rate`/s (open loop): webhook written → B's reply created at the fake Twilio (p50/p99;
  LLM time ~0, the offline responder).
- **waiting**: worker CPU over `--window` seconds while only A's replies wait for their
  slots, and the sends A made meanwhile (CPU ms per send). The sends themselves are the
  delivery jobs' own CPU (`chatgw_job_cpu_seconds{job="deliver"}`, each job thread's
  `thread_time`: the Twilio request, the status write); the rest of the process's CPU —
  taking jobs, the scheduler, heartbeats, metrics flushes, idle polling — is what waiting
  costs ("beyond the sends", % of a core).
- **drain**: A's replies per second (mid 80%), against the configured rate.
- `--kill`: SIGKILL the worker halfway through the drain and start a new one.
- **census**: every customer got exactly one reply (none missing, none twice).

    python -m bench.backlog [--customers 1500] [--mps 10] [--rate 5] [--other-seconds 60] [--kill]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections import Counter
from typing import Any

import httpx

from bench import load
from bench.stack import cpu_seconds, create_agent, stack
from bench.webhook import AGENT_NUMBER, FORM_HEADERS, PATH, SIGNATURE, LatencyRig, created, start_gateway, write_lines

OTHER_NUMBER = "+15550002222"
BURST_FROM = 15554000000


def job_cpu_s(web_base: str, job: str) -> float:
    """The fleet's `chatgw_job_cpu_seconds_sum{job=...}` from the web's /metrics."""
    text = httpx.get(web_base + "/metrics", timeout=10).text
    prefix = f'chatgw_job_cpu_seconds_sum{{job="{job}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _window(pid: int, fake_base: str, seconds: float, web_base: str) -> dict[str, float]:
    before_n, _ = created(fake_base, since=1 << 30)
    d0 = job_cpu_s(web_base, "deliver")
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    d1 = job_cpu_s(web_base, "deliver")
    after_n, _ = created(fake_base, since=1 << 30)
    sends = after_n - before_n
    wall = t1 - t0
    return {
        "seconds": round(wall, 2),
        "cpu_pct_of_core": round((c1 - c0) / wall * 100, 2),
        "sends": sends,
        "cpu_ms_per_send": round((c1 - c0) * 1000 / sends, 2) if sends else 0.0,
        "send_jobs_cpu_pct_of_core": round((d1 - d0) / wall * 100, 2),
        "send_job_cpu_ms": round((d1 - d0) * 1000 / sends, 2) if sends else 0.0,
        "beyond_sends_pct_of_core": round(((c1 - c0) - (d1 - d0)) / wall * 100, 2),
    }


def run(
    customers: int,
    mps: float,
    rate: float,
    window_s: float,
    kill: bool,
    other_s: float = 60.0,
    log: Any = print,
) -> dict[str, Any]:
    with stack() as st:
        gw = start_gateway(st)
        st.extra_env["TWILIO_MESSAGES_PER_SECOND"] = f"{mps:g}"
        create_agent(gw.public, st.admin_token(), "Bench other", channels={"numbers": [OTHER_NUMBER]}, debounce_ms=0)
        worker = st.start_worker(None)
        rig = LatencyRig(st, gw)
        idle = _window(worker.pid, gw.fake_base, window_s, gw.public)
        log(f"backlog: idle worker {idle['cpu_pct_of_core']}% of a core")
        # The same-run baseline: the other number's latency with nothing waiting.
        alone = rig.open_loop("alone", rate, other_s / 2, to=OTHER_NUMBER, concurrency=2)
        e = alone["webhook_to_twilio"]
        log(
            f"backlog: {OTHER_NUMBER} at {rate:g}/s before the burst: "
            f"webhook->Twilio p50 {e['p50_ms']} p99 {e['p99_ms']} ms"
        )

        path = st.tmp / "burst.txt"
        write_lines(path, gw.public + PATH, gw.token, customers, BURST_FROM, None, None)
        target = load.Target(gw.public + PATH, "POST", FORM_HEADERS, lines_file=str(path), line_header=SIGNATURE)
        start_n, _ = created(gw.fake_base, since=1 << 30)
        burst = load.run(target, concurrency=16, requests=customers, engine="python")
        log(f"backlog: {customers} webhooks to {AGENT_NUMBER} at {burst['rps']:.0f}/s, non-2xx {burst['non_2xx']}")

        rc = st.client()
        t0 = time.monotonic()
        while (int(rc.llen("rq:queue:turns")) or int(rc.zcard("gw:turns:pending"))) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        turns_s = time.monotonic() - t0
        log(f"backlog: the {customers} turns were done {turns_s:.1f} s after the burst; their replies wait")

        c0 = cpu_seconds(worker.pid)
        # Few connections: at a few requests a second, each of 32 would idle past uvicorn's
        # 5 s keep-alive and be closed under the load generator.
        other = rig.open_loop("other", rate, other_s, to=OTHER_NUMBER, concurrency=2)
        other_cpu = cpu_seconds(worker.pid) - c0
        e = other["webhook_to_twilio"]
        log(
            f"backlog: {OTHER_NUMBER} at {rate:g}/s meanwhile: webhook->Twilio p50 {e['p50_ms']} p99 {e['p99_ms']} ms, "
            f"missing {other['replies_missing']}, non-2xx {other['non_2xx']}, errors {other['errors']}; "
            f"worker {other_cpu / max(1, other['requests']) * 1000:.1f} ms CPU "
            "per message (its turn and send, plus A's sends and waiting meanwhile)"
        )

        waiting = _window(worker.pid, gw.fake_base, window_s, gw.public)
        log(
            f"backlog: only A's replies waiting: worker {waiting['cpu_pct_of_core']}% of a core "
            f"(idle {idle['cpu_pct_of_core']}%), {waiting['sends']} sends, "
            f"{waiting['cpu_ms_per_send']} ms CPU per send; "
            f"the send jobs' own CPU {waiting['send_jobs_cpu_pct_of_core']}% ({waiting['send_job_cpu_ms']} ms each) "
            f"-> {waiting['beyond_sends_pct_of_core']}% of a core beyond the sends"
        )

        killed_at = None
        if kill:
            half = start_n + customers // 2
            while created(gw.fake_base, since=1 << 30)[0] < half:
                time.sleep(0.2)
            os.kill(worker.pid, signal.SIGKILL)
            killed_at = created(gw.fake_base, since=1 << 30)[0] - start_n
            worker.popen.wait(10)
            worker = st.start_worker(None)
            log(f"backlog: worker killed after {killed_at} replies; a new one started")

        expected = start_n + customers + other["requests"] - other["non_2xx"] - sum(other["errors"].values())
        deadline = time.monotonic() + customers / mps * 1.5 + 180
        while created(gw.fake_base, since=1 << 30)[0] < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # anything sent twice would arrive now
        _, items = created(gw.fake_base, since=start_n)
        from_a = sorted((t, to) for t, to, frm in items if frm == AGENT_NUMBER)
        per_customer = Counter(to for _, to in from_a)
        wanted = {f"+{BURST_FROM + k}" for k in range(customers)}
        times = [t for t, _ in from_a]
        lo, hi = int(len(times) * 0.1), int(len(times) * 0.9) - 1
        drain = (hi - lo) / (times[hi] - times[lo]) if hi > lo else 0.0
        census = {
            "replies_from_a": len(from_a),
            "customers_answered": len(wanted & set(per_customer)),
            "missing": len(wanted - set(per_customer)),
            "sent_twice": sum(1 for c in per_customer.values() if c > 1),
        }
        log(f"backlog: drained at {drain:.2f}/s (configured {mps:g}/s); census {census}")
        st.stop_proc(worker)
        return {
            "customers": customers,
            "messages_per_second": mps,
            "idle": idle,
            "burst": {k: burst[k] for k in ("rps", "non_2xx", "errors")},
            "turns_done_after_s": round(turns_s, 2),
            "other_sender_alone": alone,
            "other_sender": other,
            "other_sender_worker_cpu_s": round(other_cpu, 3),
            "waiting": waiting,
            "drain_per_s_mid80": round(drain, 3),
            "killed_after_replies": killed_at,
            "census": census,
            "log_findings": st.log_findings(),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=1500)
    p.add_argument("--mps", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5.0, help="messages/s to the other agent number meanwhile")
    p.add_argument("--window", type=float, default=10.0, help="seconds of each CPU window")
    p.add_argument("--other-seconds", type=float, default=60.0, help="seconds of traffic to the other number")
    p.add_argument("--kill", action="store_true", help="SIGKILL the worker halfway through the drain")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    result = run(a.customers, a.mps, a.rate, a.window, a.kill, a.other_seconds)
    if a.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
