"""Measured load runs shared by the ingest benchmarks (`bench.ingest` for the API,
`bench.webhook` for Twilio): warm-up, closed loop per concurrency against the gateway and its
bare baselines, open loop at 70% of the best rate, the worker paused (SIGSTOP) where a label
says so, then backlog, drain and a census of the messages stored.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench import load
from bench.stack import Stack, cpu_delta, cpu_snapshot, redis_commands

TEXT = "Hello, I ordered a blue jacket last week and it has not arrived yet. Can you check?"
GATEWAY = "gateway"
PAUSED = "gateway_worker_paused"
OPEN_LOOP_FRACTION = 0.7
WARMUP_KEYS = ("rps", "statuses", "non_2xx", "errors")
DRAIN_TIMEOUT_S = 120.0


def engine_name(engine: str) -> str:
    """The load generator `engine` ("auto", "wrk" or "python") resolves to on this machine."""
    return "wrk" if engine == "wrk" or (engine == "auto" and load.have_wrk()) else "python"


def acked(result: Mapping[str, Any]) -> int:
    """Requests a load run got a 2xx answer for."""
    return sum(v for k, v in result["statuses"].items() if k.startswith("2"))


def measure(target: load.Target, pids: dict[str, int], server: str, st: Stack, **kwargs: Any) -> dict[str, Any]:
    """One load run plus CPU seconds of every process, `server`'s CPU and Redis commands per request."""
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


@contextmanager
def paused(pid: int, when: bool = True) -> Iterator[None]:
    """Stop process `pid` (SIGSTOP) for the block, if `when`, so the others get its cores."""
    if when:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if when:
            os.kill(pid, signal.SIGCONT)


def backlog(st: Stack) -> dict[str, int]:
    rc = st.client()
    return {
        "turns_queued": int(rc.llen("rq:queue:turns")),
        "turns_pending": int(rc.zcard("gw:turns:pending")),
        "turns_failed": int(rc.zcard("rq:failed:turns")),
    }


def wait_drained(st: Stack, timeout_s: float) -> float | None:
    """Seconds until no turn is queued or pending, or None if that took longer than `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        b = backlog(st)
        if b["turns_queued"] == 0 and b["turns_pending"] == 0:
            return round(time.monotonic() - start, 2)
        time.sleep(0.05)
    return None


def message_census(st: Stack, prefix: str) -> dict[str, int]:
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
        for raw in rc.hvals(f"gw:m:{sid}"):
            role = json.loads(raw).get("role")
            customer += role == "customer"
            agent += role == "agent"
    return {"sessions": len(mine), "customer_messages": customer, "agent_replies": agent, "unanswered": unanswered}


def ratios(
    runs: Mapping[str, Mapping[str, Any]],
    concurrencies: Sequence[int],
    rps: Sequence[tuple[str, str]],
    cpu: tuple[str, str],
) -> dict[str, dict[str, float]]:
    """Per concurrency (`cN`): requests/s of each (label, baseline) pair in `rps` as
    `{label}_vs_{baseline}_rps`, and for `cpu` = (key, baseline) the gateway's server CPU per
    request over the baseline's."""
    cpu_key, cpu_baseline = cpu
    out: dict[str, dict[str, float]] = {}
    for c in concurrencies:
        run = {name: runs[f"{name}@c{c}"] for name in {GATEWAY, cpu_baseline, *(n for pair in rps for n in pair)}}
        out[f"c{c}"] = {f"{a}_vs_{b}_rps": round(float(run[a]["rps"]) / float(run[b]["rps"]), 3) for a, b in rps}
        gateway_cpu, bare_cpu = (float(run[name]["server_cpu_us_per_req"]) for name in (GATEWAY, cpu_baseline))
        out[f"c{c}"][cpu_key] = round(gateway_cpu / max(bare_cpu, 0.1), 2)
    return out


class RequestSource(Protocol):
    """Where the gateway runs' requests come from."""

    def target(self, expect_rps: float, seconds: float) -> load.Target:
        """The target for the next run, expected to send about `expect_rps` for `seconds`."""
        ...

    def advance(self, result: Mapping[str, Any], concurrency: int) -> None:
        """Account for the requests a run at `concurrency` used."""
        ...


@dataclass(frozen=True)
class FixedRequests:
    """Every gateway run sends the same requests (bodies differ by customer number only)."""

    fixed: load.Target

    def target(self, expect_rps: float, seconds: float) -> load.Target:
        return self.fixed

    def advance(self, result: Mapping[str, Any], concurrency: int) -> None:
        return None


@dataclass
class IngestRunner:
    """The runs of one ingest benchmark against one stack.

    Labels name the runs: a key of `baselines` is a bare endpoint (served by "baseline"), GATEWAY
    and PAUSED the gateway (served by "web") with its worker running or stopped. `acked` counts
    the 2xx answers of every gateway run for the census.
    """

    st: Stack
    pids: dict[str, int]
    worker_pid: int
    gateway: RequestSource
    baselines: dict[str, load.Target]
    engine: str
    log: Callable[[str], None]
    # Wait until the worker has drained earlier runs' turns before a baseline or open-loop run,
    # so the bare endpoint is measured on an otherwise idle box.
    idle_first: bool = False
    acked: int = 0
    warm_rps: float = 0.0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def warm_up(self, labels: Sequence[str], seconds: float) -> dict[str, Any]:
        warmup: dict[str, Any] = {}
        for label in labels:
            target = self.baselines[label] if label in self.baselines else self.gateway.target(4_000, seconds)
            r = load.run(target, concurrency=16, duration_s=seconds, engine=self.engine)
            warmup[label] = {k: r[k] for k in WARMUP_KEYS}
            if label == GATEWAY:
                self._used(r, 16)
                self.warm_rps = r["rps"]
        return warmup

    def closed_loops(
        self, concurrencies: Sequence[int], labels: Sequence[str], duration_s: float
    ) -> dict[str, dict[str, Any]]:
        """Each label at each concurrency, interleaved so drift hits them alike; keyed `label@cN`."""
        for c in concurrencies:
            for label in labels:
                r = self._closed_loop(label, c, duration_s)
                self.runs[f"{label}@c{c}"] = r
                self.log(
                    f"  {label:<21} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                    f"p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non_2xx']}  errors {r['errors'] or 0}"
                )
        return self.runs

    def open_loops(self, concurrencies: Sequence[int], duration_s: float) -> dict[str, Any]:
        """The gateway at 70% of its best closed-loop rate, worker running and paused (asyncio engine)."""
        fixed: dict[str, Any] = {}
        concurrency = max(concurrencies)
        for label in (GATEWAY, PAUSED):
            best = max(self.runs[f"{label}@c{c}"]["rps"] for c in concurrencies)
            rate = round(OPEN_LOOP_FRACTION * best, 1)
            target = self.gateway.target(rate, duration_s)
            drained = wait_drained(self.st, DRAIN_TIMEOUT_S) if self.idle_first else None
            with paused(self.worker_pid, label == PAUSED):
                fx = measure(
                    target,
                    self.pids,
                    "web",
                    self.st,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    rate=rate,
                    engine="python",
                )
            self._used(fx, concurrency)
            fx["backlog_after"] = backlog(self.st)
            if self.idle_first:
                fx["waited_for_drain_s"] = drained
            fixed[label] = {"of_max_rps": best, "fraction": OPEN_LOOP_FRACTION, **fx}
            self.log(
                f"  {label:<21} rate {rate:.0f}/s (70% of {best:.0f}): got {fx['rps']:.0f}/s  "
                f"p50 {fx['p50_ms']:.2f} ms  p99 {fx['p99_ms']:.2f} ms (from the write: p99 "
                f"{fx['service_p99_ms']:.2f} ms)  non-2xx {fx['non_2xx']}"
            )
        return fixed

    def drain(self, prefix: str, timeout_s: float) -> dict[str, Any]:
        """After the load: the backlog, how long the worker takes to drain it, and a census of
        `prefix` customers' messages with the 2xx answers counted."""
        at_end = backlog(self.st)
        drain_s = wait_drained(self.st, timeout_s)
        census: dict[str, Any] = message_census(self.st, prefix)
        census["acked_2xx"] = self.acked
        return {"backlog_at_end_of_load": at_end, "drain_s": drain_s, "census": census}

    def _closed_loop(self, label: str, concurrency: int, duration_s: float) -> dict[str, Any]:
        closed = {"concurrency": concurrency, "duration_s": duration_s, "engine": self.engine}
        if label in self.baselines:
            drained = wait_drained(self.st, DRAIN_TIMEOUT_S) if self.idle_first else None
            r = measure(self.baselines[label], self.pids, "baseline", self.st, **closed)
            if drained is not None:
                r["waited_for_drain_s"] = drained
            return r
        target = self.gateway.target(self._best_gateway_rps(), duration_s)
        with paused(self.worker_pid, label == PAUSED):
            r = measure(target, self.pids, "web", self.st, **closed)
        if target.lines_file is not None:
            r["first_line"] = target.offset
        self._used(r, concurrency)
        r["backlog_after"] = backlog(self.st)
        return r

    def _best_gateway_rps(self) -> float:
        rates = [float(r["rps"]) for k, r in self.runs.items() if k.startswith(GATEWAY)]
        return max([*rates, self.warm_rps, 4_000.0])

    def _used(self, result: Mapping[str, Any], concurrency: int) -> None:
        self.acked += acked(result)
        self.gateway.advance(result, concurrency)
