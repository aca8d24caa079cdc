"""Twilio webhook: signed `POST /twilio/messages` ingest against a bare TwiML endpoint, and
webhook-in → Twilio-REST-call-out latency, with real processes and a local fake Twilio.

What runs (all on this machine's cores, shared): a private redis-server, one `chatgw web`
with PUBLIC_BASE_URL = its own address and Twilio configured (TWILIO_ACCOUNT_SID,
TWILIO_AUTH_TOKEN, TWILIO_API_BASE_URL → `bench.faketwilio`, its own process), one
`chatgw worker` (offline responder: the zero-latency mocked LLM; it delivers every reply
over HTTP to the fake Twilio, inline in the turn), the bare baseline (`bench.baseline`
`/twiml`) and the load generator (`bench.load`, its own process). One agent owns the `To`
number (`channels.numbers`, `debounce_ms: 0`; SMS would otherwise wait 1.5 s for more
messages). TWILIO_MESSAGES_PER_SECOND is raised to 100,000 so the per-sender throttle
(default 10 messages/s per sending number: every reply here comes from the one agent
number) does not cap the figures: they measure the gateway, not a Twilio rate limit.

Requests: the form Twilio sends for an inbound SMS (19 fields, `channels.twilio.forms.inbound_form`,
the same builder as the tests' `sms_form()`), each with its own MessageSid (a duplicate
would be deduplicated: cheaper and not what is measured), signed with
`RequestValidator(auth_token).compute_signature(PUBLIC_BASE_URL + "/twilio/messages",
params)`, pre-generated into a file (`<signature>TAB<body>` per line) that the load
generator cycles through (wrk: a Lua script reads it at init; asyncio engine likewise).

1. Ingest (`run_ingest`): `lines` requests (default 150,000, more appended when a run
   could use them up) from `customers` (1,000) From numbers round-robin. Closed loop at
   concurrency 16 and 64, interleaved: bare TwiML (same request bytes; measured only once
   the worker has drained the turns earlier runs left, so nothing else is busy), gateway,
   gateway with the worker paused (SIGSTOP). Each gateway run starts where the previous one
   stopped in the file, so no MessageSid repeats (`lines_wrapped` says if they ever did).
   Then open loop (asyncio engine) at 70% of the best gateway requests/s, worker running
   and paused, each from a drained state. Ratios are gateway / bare TwiML, same run (SPEC
   §13: ≥ 0.20x; p99 ≤ 50 ms at 70% of the maximum). Then backlog, drain, a census of
   messages stored vs 200s, and the delivery status of the replies (the fake Twilio's count).
2. Latency (`run_latency`, fresh stack), for each worker configuration (1 process x
   `--concurrency` 4, then 1):
   a. Maximum: with the worker paused, N signed webhooks from N new customers; once the N
      turns are queued the worker resumes; max turns/s = N / (last Twilio create - resume).
   b. Open loop at 70% of that rate for `duration` seconds, each request from a new
      customer; latency = time the fake Twilio received the create for that customer -
      time the load generator wrote the webhook (both `time.time()`, one machine).
      p50/p90/p99/max (SPEC §13: p50 ≤ 15 ms, p99 ≤ 60 ms).
   c. The same at a low rate (`low_rate`, default 20/s): the floor.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench import load
from bench.runner import GATEWAY, PAUSED, TEXT, IngestRunner, backlog, engine_name, ratios
from bench.stack import Proc, Stack, create_agent, redis_pid, stack
from channels.twilio.forms import inbound_form
from gateway.cli.redis_server import free_port

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AGENT_NUMBER = "+15550001111"
PATH = "/twilio/messages"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
SIGNATURE = "X-Twilio-Signature"
INGEST_FROM = 15552000000  # ingest customers: +15552000000 .. + customers - 1
LATENCY_FROM = 15553000000  # latency customers: one new number per request
MPS = "100000"
BARE_TWIML = "bare_twiml"


def sms_form(message_sid: str, from_number: str, body: str, to: str = AGENT_NUMBER) -> dict[str, str]:
    """The inbound SMS webhook form Twilio sends to the agent number."""
    return inbound_form(message_sid=message_sid, account_sid=ACCOUNT_SID, from_=from_number, to=to, body=body)


def from_number(base: int, k: int, customers: int | None) -> str:
    return f"+{base + (k % customers if customers else k)}"


def _chunk(
    url: str, token: str, sid_prefix: str, start: int, count: int, base: int, customers: int | None, to: str
) -> str:
    validator = RequestValidator(token)
    out = []
    for k in range(start, start + count):
        form = sms_form(f"SM{sid_prefix}{k:024x}", from_number(base, k, customers), TEXT, to)
        out.append(validator.compute_signature(url, form) + "\t" + urlencode(form) + "\n")
    return "".join(out)


def write_lines(
    path: Path,
    url: str,
    token: str,
    count: int,
    base: int,
    customers: int | None,
    pool: ProcessPoolExecutor | None,
    start: int = 0,
    to: str = AGENT_NUMBER,
) -> Path:
    """Signed webhook requests `start` .. `count - 1`, one per line (appended when `start` > 0);
    line k comes from `from_number(base, k, customers)` and has its own MessageSid."""
    prefix = secrets.token_hex(4)  # 8 hex + 24 hex = a 32-hex MessageSid, unique per line
    step = 10_000
    args = [(url, token, prefix, s, min(step, count - s), base, customers, to) for s in range(start, count, step)]
    with open(path, "a" if start else "w") as f:
        if pool is None:
            for a in args:
                f.write(_chunk(*a))
        else:
            for text in pool.map(_chunk, *zip(*args, strict=True)):
                f.write(text)
    return path


@dataclass
class SignedLines:
    """The file of signed ingest requests the gateway runs walk through, each run starting where
    the previous one stopped. A line is never reused (a MessageSid seen before is deduplicated:
    cheaper, not what is measured): more are appended when a run could use the file up."""

    path: Path
    url: str
    token: str
    customers: int
    pool: ProcessPoolExecutor
    available: int
    next_line: int = 0
    top_ups: list[int] = field(default_factory=list)

    @classmethod
    def write(
        cls, path: Path, url: str, token: str, count: int, customers: int, pool: ProcessPoolExecutor
    ) -> SignedLines:
        write_lines(path, url, token, count, INGEST_FROM, customers, pool)
        return cls(path, url, token, customers, pool, available=count)

    def target(self, expect_rps: float, seconds: float) -> load.Target:
        need = self.next_line + int(max(expect_rps, 1_000) * seconds * 1.5) + 1_000
        if need > self.available:
            write_lines(
                self.path, self.url, self.token, need, INGEST_FROM, self.customers, self.pool, start=self.available
            )
            self.top_ups.append(need - self.available)
            self.available = need
        return self.at(self.url, self.next_line)

    def at(self, url: str, offset: int) -> load.Target:
        """These requests sent to `url`, from line `offset` on."""
        return load.Target(url, "POST", FORM_HEADERS, lines_file=str(self.path), line_header=SIGNATURE, offset=offset)

    def advance(self, result: Mapping[str, Any], concurrency: int) -> None:
        self.next_line += int(result.get("sent", result["requests"])) + concurrency  # + in flight when a run stopped


@dataclass(frozen=True)
class TwilioGateway:
    """`chatgw web` configured for a local fake Twilio, with an agent owning AGENT_NUMBER."""

    public: str
    token: str
    web: Proc
    fake_pid: int
    fake_base: str


def start_gateway(st: Stack) -> TwilioGateway:
    """Start the fake Twilio and `chatgw web` for it (PUBLIC_BASE_URL = its own address)."""
    token = secrets.token_hex(16)
    fake, fake_base = st.start_fake_twilio(ACCOUNT_SID)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    st.extra_env = {
        "PUBLIC_BASE_URL": public,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_API_BASE_URL": fake_base,
        "TWILIO_MESSAGES_PER_SECOND": MPS,
    }
    admin = st.admin_token()
    web, base = st.start_web(port)
    create_agent(base, admin, "Bench SMS", channels={"numbers": [AGENT_NUMBER]}, debounce_ms=0)
    return TwilioGateway(public, token, web, fake.pid, fake_base)


def created(fake_base: str, since: int = 0) -> tuple[int, list[list[Any]]]:
    r = httpx.get(f"{fake_base}/_created", params={"since": since}, timeout=10).json()
    return int(r["count"]), list(r["items"])


def _wait_created(fake_base: str, target: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count, _ = created(fake_base, since=1 << 30)
        if count >= target:
            break
        time.sleep(0.05)
    return count


def post_signed(public: str, token: str) -> httpx.Response:
    """One signed webhook from a new MessageSid; raises unless it is answered 200 empty TwiML."""
    form = sms_form("SM" + secrets.token_hex(16), "+15551230000", TEXT)
    sig = RequestValidator(token).compute_signature(public + PATH, form)
    r = httpx.post(public + PATH, data=form, headers={SIGNATURE: sig}, timeout=10)
    if r.status_code != 200 or not r.text.endswith("<Response/>"):
        raise RuntimeError(f"signed webhook answered {r.status_code}: {r.text[:200]}")
    return r


def smoke(public: str, token: str, fake_base: str) -> dict[str, Any]:
    """One signed webhook end to end before measuring: 200 TwiML and a reply at the fake Twilio."""
    before, _ = created(fake_base, since=1 << 30)
    r = post_signed(public, token)
    t0 = time.monotonic()
    count = _wait_created(fake_base, before + 1, 20)
    if count < before + 1:
        raise RuntimeError("no reply reached the fake Twilio within 20 s")
    _, items = created(fake_base, since=before)
    return {"status": r.status_code, "reply_after_s": round(time.monotonic() - t0, 3), "reply_to": items[0][1]}


def delivery_census(st: Stack, prefix: str) -> dict[str, int]:
    """Delivery status of the agent replies in `prefix` customers' sessions."""
    rc = st.client()
    out: dict[str, int] = {}
    for key in rc.scan_iter("gw:s:*", count=1000):
        if not str(rc.hget(key, "customer_id") or "").startswith(prefix):
            continue
        for raw in rc.hvals("gw:m:" + str(key).split(":", 2)[2]):
            msg = json.loads(raw)
            if msg.get("role") != "agent":
                continue
            if msg.get("private"):  # a draft superseded by a newer customer message: never sent
                status = "private_" + str(msg.get("kind") or "") + ":" + str((msg.get("meta") or {}).get("suppressed"))
            else:
                status = (msg.get("delivery") or {}).get("status", "none")
            out[status] = out.get(status, 0) + 1
    return out


def _stats_ms(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "n": len(v),
        "p50_ms": round(load.percentile(v, 50) * 1000, 2),
        "p90_ms": round(load.percentile(v, 90) * 1000, 2),
        "p99_ms": round(load.percentile(v, 99) * 1000, 2),
        "max_ms": round(v[-1] * 1000, 2) if v else float("nan"),
    }


# ---------------------------------------------------------------------------------------
# 1. Ingest


def _count_replies(st: Stack, fake_base: str, prefix: str, census: dict[str, Any]) -> dict[str, int]:
    """Add the replies the fake Twilio received (now and 2 s later) to `census`; return the
    delivery statuses of the agent replies stored."""
    census["replies_at_fake_twilio"] = created(fake_base, since=1 << 30)[0] - 1  # minus the smoke test
    deliveries = delivery_census(st, prefix)
    time.sleep(2)
    census["replies_at_fake_twilio_2s_later"] = created(fake_base, since=1 << 30)[0] - 1
    return deliveries


def run_ingest(
    duration_s: float = 8.0,
    *,
    concurrencies: tuple[int, ...] = (16, 64),
    customers: int = 1_000,
    lines: int = 150_000,
    warmup_s: float = 2.0,
    worker_concurrency: int = 4,
    engine: str = "auto",
    log: Any = print,
) -> dict[str, Any]:
    # The pool signs requests (≈ 50 µs each) on all cores: 150,000 take ≈ 4 s.
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool, stack() as st:
        gw = start_gateway(st)
        t0 = time.monotonic()
        signed = SignedLines.write(st.tmp / "ingest-lines.txt", gw.public + PATH, gw.token, lines, customers, pool)
        gen_s = round(time.monotonic() - t0, 1)
        worker = st.start_worker(worker_concurrency)
        baseline, bbase = st.start_baseline()
        check = smoke(gw.public, gw.token, gw.fake_base)
        pids = {
            "web": gw.web.pid,
            "worker": worker.pid,
            "redis": redis_pid(st),
            "baseline": baseline.pid,
            "faketwilio": gw.fake_pid,
        }
        runner = IngestRunner(
            st,
            pids=pids,
            worker_pid=worker.pid,
            gateway=signed,
            # The same request bytes as the gateway gets.
            baselines={BARE_TWIML: signed.at(bbase + "/twiml", 0)},
            engine=engine,
            log=log,
            idle_first=True,
        )
        engine_used = engine_name(engine)
        log(
            f"webhook ingest: {lines:,} signed requests generated in {gen_s} s; load generator {engine_used}; "
            f"{duration_s:g}s per run; worker concurrency {worker_concurrency}; smoke {check}"
        )
        warmup = runner.warm_up((BARE_TWIML, GATEWAY), warmup_s)
        runs = runner.closed_loops(concurrencies, (BARE_TWIML, GATEWAY, PAUSED), duration_s)
        fixed = runner.open_loops(concurrencies, duration_s)
        prefix = f"+{INGEST_FROM}"[:8]
        after = runner.drain(prefix, timeout_s=180)
        deliveries = _count_replies(st, gw.fake_base, prefix, after["census"])
        unknown = int(st.client().hget("gw:counters", "unknown_number") or 0)
        log(f"  drain after load: {after['drain_s']} s; census {after['census']}; reply delivery statuses {deliveries}")
        return {
            "engine": engine_used,
            "duration_s": duration_s,
            "customers": customers,
            "worker_concurrency": worker_concurrency,
            "lines": signed.available,
            "lines_topped_up": signed.top_ups,
            "lines_used": signed.next_line,
            "lines_wrapped": signed.next_line > signed.available,
            "generate_s": gen_s,
            "smoke": check,
            "warmup": warmup,
            "runs": runs,
            "ratios": ratios(
                runs,
                concurrencies,
                rps=((GATEWAY, BARE_TWIML), (PAUSED, BARE_TWIML)),
                cpu=("server_cpu_per_req_gateway_vs_bare", BARE_TWIML),
            ),
            "fixed_rate": fixed,
            **after,
            "backlog_after_drain": backlog(st),
            "reply_delivery_statuses": deliveries,
            "unknown_number_count": unknown,
            "log_findings": st.log_findings(),
        }


# ---------------------------------------------------------------------------------------
# 2. Latency: webhook in -> Twilio create out


class LatencyRig:
    def __init__(self, st: Stack, gw: TwilioGateway) -> None:
        self.st, self.public, self.token, self.fake_base = st, gw.public, gw.token, gw.fake_base
        self.next_customer = 0

    def lines(self, name: str, count: int, to: str = AGENT_NUMBER) -> tuple[load.Target, int]:
        """`count` requests from `count` new customers to `to`; returns the target and its first customer."""
        first = self.next_customer
        self.next_customer += count
        path = self.st.tmp / f"{name}.txt"
        write_lines(path, self.public + PATH, self.token, count, LATENCY_FROM + first, None, None, to=to)
        target = load.Target(self.public + PATH, "POST", FORM_HEADERS, lines_file=str(path), line_header=SIGNATURE)
        return target, first

    def maximum(self, worker_pid: int, n: int) -> dict[str, Any]:
        target, _ = self.lines(f"max-{worker_pid}", n)
        rc = self.st.client()
        os.kill(worker_pid, signal.SIGSTOP)
        try:
            fill = load.run(target, concurrency=16, requests=n, engine="python")
            deadline = time.monotonic() + 30
            while int(rc.zcard("gw:turns:pending")) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            queued = int(rc.llen("rq:queue:turns"))
            before, _ = created(self.fake_base, since=1 << 30)
            time.sleep(0.2)
            resumed = time.time()
        finally:
            os.kill(worker_pid, signal.SIGCONT)
        count = _wait_created(self.fake_base, before + n, 120)
        _, items = created(self.fake_base, since=before)
        times = sorted(t for t, _, _ in items)
        if count < before + n or not times:
            raise RuntimeError(f"only {count - before} of {n} replies reached the fake Twilio")
        elapsed = times[-1] - resumed
        return {
            "turns": n,
            "fill_rps": fill["rps"],
            "fill_non_2xx": fill["non_2xx"],
            "queued": queued,
            "first_reply_after_ms": round((times[0] - resumed) * 1000, 1),
            "elapsed_s": round(elapsed, 3),
            "turns_per_s": round(n / elapsed, 1),
            # Steady state, without the first and last 10% of replies.
            "turns_per_s_mid80": round(
                (int(n * 0.9) - int(n * 0.1)) / (times[int(n * 0.9) - 1] - times[int(n * 0.1)]), 1
            ),
        }

    def open_loop(
        self, name: str, rate: float, duration_s: float, to: str = AGENT_NUMBER, concurrency: int = 32
    ) -> dict[str, Any]:
        n = max(1, round(rate * duration_s))
        target, first = self.lines(name, n, to)
        before, _ = created(self.fake_base, since=1 << 30)
        send_log = self.st.tmp / f"{name}.sendlog"
        r = load.run(target, concurrency=concurrency, rate=rate, requests=n, engine="python", send_log=str(send_log))
        ok = sum(v for k, v in r["statuses"].items() if k.startswith("2"))
        _wait_created(self.fake_base, before + ok, 60)
        _, items = created(self.fake_base, since=before)
        arrived: dict[str, float] = {}
        extra = 0
        for t, to, _ in items:
            if to in arrived:
                extra += 1
            else:
                arrived.setdefault(to, t)
        e2e: list[float] = []
        webhook: list[float] = []
        missing = 0
        for row in send_log.read_text().splitlines():
            line, sent, done, status = row.split("\t")
            if not status.startswith("2"):
                continue
            webhook.append(float(done) - float(sent))
            t = arrived.get(from_number(LATENCY_FROM + first, int(line), None))
            if t is None:
                missing += 1
            else:
                e2e.append(t - float(sent))
        return {
            "target_rate": rate,
            "requests": n,
            "achieved_rps": r["rps"],
            "non_2xx": r["non_2xx"],
            "errors": r["errors"],
            "send_lag_p99_ms": r.get("send_lag_p99_ms"),
            "webhook_response": _stats_ms(webhook),
            "webhook_to_twilio": _stats_ms(e2e),
            "replies_missing": missing,
            "replies_extra": extra,
        }


def run_latency(
    duration_s: float = 10.0,
    *,
    worker_concurrencies: tuple[int, ...] = (4, 1),
    flood: int = 1_500,
    low_rate: float = 20.0,
    low_duration_s: float = 8.0,
    log: Any = print,
) -> dict[str, Any]:
    with stack() as st:
        gw = start_gateway(st)
        rig = LatencyRig(st, gw)
        log(f"webhook latency: webhook -> Twilio create, {flood} turns for the maximum, {duration_s:g} s at 70%")
        configs: dict[str, Any] = {}
        for conc in worker_concurrencies:
            worker = st.start_worker(conc)
            smoke(gw.public, gw.token, gw.fake_base)
            mx = rig.maximum(worker.pid, flood)
            rate = round(0.7 * mx["turns_per_s"], 1)
            at70 = rig.open_loop(f"at70-c{conc}", rate, duration_s)
            low = rig.open_loop(f"low-c{conc}", low_rate, low_duration_s)
            failed = int(st.client().zcard("rq:failed:turns"))
            st.stop_proc(worker)
            configs[f"1x{conc}"] = {"maximum": mx, "at_70pct": at70, "low_rate": low, "failed_jobs": failed}
            for label, x in (("70% of max", at70), (f"{low_rate:g}/s", low)):
                e = x["webhook_to_twilio"]
                log(
                    f"  worker 1 x {conc}: max {mx['turns_per_s']:.0f} turns/s; {label}: {x['target_rate']:.0f}/s "
                    f"webhook->Twilio p50 {e['p50_ms']:.1f} ms p90 {e['p90_ms']:.1f} p99 {e['p99_ms']:.1f} "
                    f"max {e['max_ms']:.1f} (n={e['n']}, missing {x['replies_missing']}, non-2xx {x['non_2xx']})"
                )
        return {
            "flood": flood,
            "duration_s": duration_s,
            "low_rate": low_rate,
            "messages_per_second_setting": float(MPS),
            "configs": configs,
            "pids": {"web": gw.web.pid, "faketwilio": gw.fake_pid},
            "log_findings": st.log_findings(),
        }


def run(duration_s: float = 8.0, *, engine: str = "auto", log: Any = print) -> dict[str, Any]:
    return {
        "ingest": run_ingest(duration_s, engine=engine, log=log),
        "latency": run_latency(log=log),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
