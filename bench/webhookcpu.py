"""The web's CPU per signed webhook against a bare endpoint, side by side (issue 13, item 3).

    python -m bench.webhookcpu [--rounds 4] [--duration 5] [--concurrency 16 64]
                               [--before DIR] [--worker] [--open-loop]

The stable figure on this shared, noisy machine: CPU seconds the server process spends per
request, while the bare endpoint and the gateway take the same load in the same minute.
What runs: a private redis-server and the load generator (wrk when installed) pinned to the
last core; the servers — `bench.baseline`'s `/twiml` (constant TwiML after reading the body),
this tree's `chatgw web`, and with `--before DIR` a second `chatgw web` run from an older tree
(`git archive <commit> | tar -x -C DIR`) — pinned together to the first core. Both webs have
the same PUBLIC_BASE_URL, Twilio token and Redis, so they take the same signed requests (one
file, `bench.webhook.SignedLines`; no MessageSid is sent twice). No worker by default (the
turns wait in Redis: the figure is the web's); `--worker` runs `chatgw worker` on the last core.

Each round runs every server once per concurrency, closed loop, in an order that alternates
between rounds; a round's ratio is bare CPU/request ÷ gateway CPU/request (SPEC §13's "paired
cost ratio": ≥ 0.20, aim 0.25). Printed: each round's figures, then the medians.
`--open-loop` then offers 70 % of this web's best closed-loop rate for `duration` seconds and
prints the webhook's response-time percentiles (SPEC §13: p99 ≤ 50 ms); the maximum is the median
over the rounds at the concurrency that did best.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import load
from bench.runner import acked, measure
from bench.stack import Proc, Stack, redis_pid, stack, wait_http
from bench.webhook import BARE_TWIML, PATH, SignedLines, post_signed, smoke, start_gateway
from gateway.cli.redis_server import free_port

GATEWAY = "gateway"
BEFORE = "gateway_before"


def _cores() -> tuple[set[int], set[int]]:
    """(servers' cores, everything else's): the first core, and the last (one core each)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, {cpus[-1]}


def start_before(st: Stack, tree: Path, public: str) -> tuple[Proc, str]:
    """`chatgw web` from another source tree (its packages first on PYTHONPATH), serving the
    gateway's PUBLIC_BASE_URL so it verifies the same signatures."""
    port = free_port()
    path = os.pathsep.join([str(tree), st.env()["PYTHONPATH"]])
    args = ["-m", "gateway.cli", "web", "--host", "127.0.0.1", "--port", str(port)]
    proc = st.spawn("web-before", args, env={"PYTHONPATH": path, "PUBLIC_BASE_URL": public})
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", proc)
    return proc, base


def run(
    rounds: int = 4,
    duration_s: float = 5.0,
    concurrencies: tuple[int, ...] = (16, 64),
    before: Path | None = None,
    worker: bool = False,
    open_loop: bool = False,
    pin: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    servers_core, other_core = _cores() if pin else (os.sched_getaffinity(0),) * 2
    os.sched_setaffinity(0, other_core)  # redis, the load generator, the worker: inherited
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool, stack() as st:
        gw = start_gateway(st)
        web_base = gw.public
        baseline, bbase = st.start_baseline()
        pids = {GATEWAY: gw.web.pid, BARE_TWIML: baseline.pid, "redis": redis_pid(st)}
        bases = {GATEWAY: web_base, BARE_TWIML: bbase}
        if before is not None:
            old, bases[BEFORE] = start_before(st, before, gw.public)
            pids[BEFORE] = old.pid
        for name in (GATEWAY, BARE_TWIML, BEFORE):
            if name in pids:
                os.sched_setaffinity(pids[name], servers_core)
        if worker:
            st.start_worker(None)
        # Without a worker nothing replies: the webhook's own answer is the check.
        check = (
            smoke(gw.public, gw.token, gw.fake_base)
            if worker
            else {"status": post_signed(gw.public, gw.token).status_code}
        )
        signed = SignedLines.write(st.tmp / "lines.txt", gw.public + PATH, gw.token, 60_000, 1_000, pool)
        log(
            f"webhook CPU, side by side: servers on core {sorted(servers_core)}, redis + load on "
            f"{sorted(other_core)}; {rounds} rounds x {duration_s:g} s; worker {'running' if worker else 'absent'}; "
            f"load {'wrk' if load.have_wrk() else 'python'}; smoke {check}"
        )
        names = [BARE_TWIML, GATEWAY] + ([BEFORE] if before is not None else [])

        def one(name: str, c: int) -> dict[str, Any]:
            signed.target(3_000, duration_s)  # tops the file up when this run could use it up
            path = "/twiml" if name == BARE_TWIML else PATH
            target = signed.at(bases[name] + path, signed.next_line)
            r = measure(target, pids, name, st, concurrency=c, duration_s=duration_s)
            signed.advance(r, c)
            if acked(r) != r["requests"]:
                raise RuntimeError(f"{name}: {r['requests'] - acked(r)} requests not answered 2xx: {r['statuses']}")
            return r

        for name in names:  # warm-up: imports, caches, the first connections
            one(name, 16)
        per_round: list[dict[str, Any]] = []
        for k in range(rounds):
            order = names if k % 2 == 0 else names[::-1]
            row: dict[str, Any] = {}
            for c in concurrencies:
                for name in order:
                    r = one(name, c)
                    row[f"{name}@c{c}"] = {"cpu_us": r["server_cpu_us_per_req"], "rps": r["rps"]}
                for name in names[1:]:
                    row[f"ratio_{name}@c{c}"] = round(
                        row[f"{BARE_TWIML}@c{c}"]["cpu_us"] / row[f"{name}@c{c}"]["cpu_us"], 3
                    )
            per_round.append(row)
            log(f"  round {k + 1}: " + json.dumps(row))
        medians: dict[str, float] = {}
        for key in per_round[0]:
            values = [r[key] if key.startswith("ratio_") else r[key]["cpu_us"] for r in per_round]
            medians[key if key.startswith("ratio_") else key + "_cpu_us"] = round(statistics.median(values), 3)
        for c in concurrencies:
            parts = [f"bare {medians[f'{BARE_TWIML}@c{c}_cpu_us']:.1f} µs"]
            for name in names[1:]:
                parts.append(
                    f"{name} {medians[f'{name}@c{c}_cpu_us']:.1f} µs → ratio {medians[f'ratio_{name}@c{c}']:.3f}"
                )
            log(f"  median c={c}: " + "; ".join(parts))
        result: dict[str, Any] = {
            "rounds": per_round,
            "medians": medians,
            "duration_s": duration_s,
            "worker": worker,
            "before": str(before) if before else None,
        }
        if open_loop:
            result["open_loop"] = {}
            for name in names[1:]:
                # The maximum: the median over the rounds at the concurrency that did best (one
                # lucky round would set a rate the web cannot hold).
                best = max(statistics.median(r[f"{name}@c{c}"]["rps"] for r in per_round) for c in concurrencies)
                rate = round(0.7 * best)
                target = signed.at(bases[name] + PATH, signed.next_line)
                t0 = time.monotonic()
                r = measure(target, pids, name, st, concurrency=64, rate=rate, requests=int(rate * duration_s))
                signed.advance(r, 64)
                summary = {
                    k: r.get(k)
                    for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "non_2xx", "errors", "send_lag_p99_ms")
                }
                summary |= {"offered_rps": rate, "server_cpu_us_per_req": r["server_cpu_us_per_req"]}
                summary["wall_s"] = round(time.monotonic() - t0, 1)
                result["open_loop"][name] = summary
                log(f"  open loop at 70% ({rate}/s), {name}: " + json.dumps(summary))
        result["log_findings"] = st.log_findings()
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.webhookcpu")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--before", type=Path, help="an older source tree to run side by side")
    p.add_argument("--worker", action="store_true", help="run chatgw worker (on the load's core)")
    p.add_argument("--open-loop", action="store_true", help="then 70%% of the best rate, open loop")
    p.add_argument("--no-pin", action="store_true", help="leave every process on every core")
    p.add_argument("--json", type=Path, help="write the full result here")
    args = p.parse_args(argv)
    result = run(
        args.rounds, args.duration, tuple(args.concurrency), args.before, args.worker, args.open_loop, not args.no_pin
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
