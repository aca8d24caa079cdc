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

Requests: the form Twilio sends for an inbound SMS (19 fields, as in
tests/channels/twilio/wire.py `sms_form()`), each with its own MessageSid (a duplicate
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bench import load
from bench.ingest import TEXT, _backlog, _measure, _message_census, _wait_drained
from bench.stack import Stack, create_agent, redis_pid, stack
from gateway.redis_server import free_port

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AGENT_NUMBER = "+15550001111"
PATH = "/twilio/messages"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
SIGNATURE = "X-Twilio-Signature"
INGEST_FROM = 15552000000  # ingest customers: +15552000000 .. + customers - 1
LATENCY_FROM = 15553000000  # latency customers: one new number per request
MPS = "100000"


def sms_form(message_sid: str, from_number: str, body: str) -> dict[str, str]:
    """The inbound SMS webhook form Twilio sends (tests/channels/twilio/wire.py sms_form)."""
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": message_sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": AGENT_NUMBER,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_number,
        "ApiVersion": "2010-04-01",
    }


def from_number(base: int, k: int, customers: int | None) -> str:
    return f"+{base + (k % customers if customers else k)}"


def _chunk(url: str, token: str, sid_prefix: str, start: int, count: int, base: int, customers: int | None) -> str:
    validator = RequestValidator(token)
    out = []
    for k in range(start, start + count):
        form = sms_form(f"SM{sid_prefix}{k:024x}", from_number(base, k, customers), TEXT)
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
) -> Path:
    """Signed webhook requests `start` .. `count - 1`, one per line (appended when `start` > 0);
    line k comes from `from_number(base, k, customers)` and has its own MessageSid."""
    prefix = secrets.token_hex(4)  # 8 hex + 24 hex = a 32-hex MessageSid, unique per line
    step = 10_000
    args = [(url, token, prefix, s, min(step, count - s), base, customers) for s in range(start, count, step)]
    with open(path, "a" if start else "w") as f:
        if pool is None:
            for a in args:
                f.write(_chunk(*a))
        else:
            for text in pool.map(_chunk, *zip(*args, strict=True)):
                f.write(text)
    return path


def _twilio_stack(st: Stack, token: str) -> tuple[str, int, str]:
    """Start the fake Twilio and configure the product processes for it; returns the public URL."""
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
    return public, fake.pid, fake_base


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


def smoke(public: str, token: str, fake_base: str) -> dict[str, Any]:
    """One signed webhook end to end before measuring: 200 TwiML and a reply at the fake Twilio."""
    before, _ = created(fake_base, since=1 << 30)
    form = sms_form("SM" + secrets.token_hex(16), "+15551230000", TEXT)
    sig = RequestValidator(token).compute_signature(public + PATH, form)
    r = httpx.post(public + PATH, data=form, headers={SIGNATURE: sig}, timeout=10)
    if r.status_code != 200 or not r.text.endswith("<Response/>"):
        raise RuntimeError(f"signed webhook answered {r.status_code}: {r.text[:200]}")
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
        token = secrets.token_hex(16)
        public, fake_pid, fake_base = _twilio_stack(st, token)
        admin = st.admin_token()
        web, base = st.start_web(int(public.rsplit(":", 1)[1]))
        create_agent(base, admin, "Bench SMS", channels={"numbers": [AGENT_NUMBER]}, debounce_ms=0)
        t0 = time.monotonic()
        lines_file = write_lines(st.tmp / "ingest-lines.txt", public + PATH, token, lines, INGEST_FROM, customers, pool)
        gen_s = round(time.monotonic() - t0, 1)
        available = lines
        top_ups: list[int] = []
        worker = st.start_worker(worker_concurrency)
        baseline, bbase = st.start_baseline()
        check = smoke(public, token, fake_base)
        pids = {
            "web": web.pid,
            "worker": worker.pid,
            "redis": redis_pid(st),
            "baseline": baseline.pid,
            "faketwilio": fake_pid,
        }
        engine_used = "wrk" if engine == "wrk" or (engine == "auto" and load.have_wrk()) else "python"
        log(
            f"webhook ingest: {lines:,} signed requests generated in {gen_s} s; load generator {engine_used}; "
            f"{duration_s:g}s per run; worker concurrency {worker_concurrency}; smoke {check}"
        )
        bare = load.Target(
            bbase + "/twiml", "POST", FORM_HEADERS, lines_file=str(lines_file), line_header=SIGNATURE, offset=0
        )
        next_line = 0
        acked = 0

        def gateway(offset: int, expect_rps: float, seconds: float) -> load.Target:
            # Never reuse a line (a MessageSid seen before is deduplicated: cheaper, not what
            # is measured): append more signed requests when the file could run out.
            nonlocal available
            need = offset + int(max(expect_rps, 1_000) * seconds * 1.5) + 1_000
            if need > available:
                write_lines(lines_file, public + PATH, token, need, INGEST_FROM, customers, pool, start=available)
                top_ups.append(need - available)
                available = need
            return load.Target(
                public + PATH, "POST", FORM_HEADERS, lines_file=str(lines_file), line_header=SIGNATURE, offset=offset
            )

        def best_gateway_rps() -> float:
            return max([float(r["rps"]) for k, r in runs.items() if k.startswith("gateway")] + [warm_rps, 4_000.0])

        def advance(r: dict[str, Any], c: int) -> None:
            nonlocal next_line, acked
            next_line += int(r.get("sent", r["requests"])) + c  # + in flight when a run stopped
            acked += sum(v for k, v in r["statuses"].items() if k.startswith("2"))

        warmup: dict[str, Any] = {}
        runs: dict[str, dict[str, Any]] = {}
        warm_rps = 0.0
        for label in ("bare_twiml", "gateway"):
            target = bare if label == "bare_twiml" else gateway(next_line, 4_000, warmup_s)
            r = load.run(target, concurrency=16, duration_s=warmup_s, engine=engine)
            warmup[label] = {k: r[k] for k in ("rps", "statuses", "non_2xx", "errors")}
            if label == "gateway":
                advance(r, 16)
                warm_rps = r["rps"]

        for c in concurrencies:
            for label in ("bare_twiml", "gateway", "gateway_worker_paused"):
                paused = label == "gateway_worker_paused"
                target = bare if label == "bare_twiml" else gateway(next_line, best_gateway_rps(), duration_s)
                server = "baseline" if label == "bare_twiml" else "web"
                # The bare endpoint is measured on an idle box: the worker must not be still
                # answering the turns an earlier gateway run left behind.
                drained = _wait_drained(st, timeout_s=120) if label == "bare_twiml" else None
                if paused:
                    os.kill(worker.pid, signal.SIGSTOP)
                try:
                    r = _measure(target, pids, server, st, concurrency=c, duration_s=duration_s, engine=engine)
                finally:
                    if paused:
                        os.kill(worker.pid, signal.SIGCONT)
                if label != "bare_twiml":
                    r["first_line"] = target.offset
                    advance(r, c)
                    r["backlog_after"] = _backlog(st)
                if drained is not None:
                    r["waited_for_drain_s"] = drained
                runs[f"{label}@c{c}"] = r
                log(
                    f"  {label:<21} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                    f"p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non_2xx']}  errors {r['errors'] or 0}"
                )

        ratios = {
            f"c{c}": {
                "gateway_vs_bare_twiml_rps": round(runs[f"gateway@c{c}"]["rps"] / runs[f"bare_twiml@c{c}"]["rps"], 3),
                "gateway_worker_paused_vs_bare_twiml_rps": round(
                    runs[f"gateway_worker_paused@c{c}"]["rps"] / runs[f"bare_twiml@c{c}"]["rps"], 3
                ),
                "server_cpu_per_req_gateway_vs_bare": round(
                    runs[f"gateway@c{c}"]["server_cpu_us_per_req"]
                    / max(runs[f"bare_twiml@c{c}"]["server_cpu_us_per_req"], 0.1),
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
            target = gateway(next_line, rate, duration_s)
            drained = _wait_drained(st, timeout_s=120)  # start without the previous runs' backlog
            if paused:
                os.kill(worker.pid, signal.SIGSTOP)
            try:
                fx = _measure(
                    target,
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
            advance(fx, max(concurrencies))
            fx["backlog_after"] = _backlog(st)
            fx["waited_for_drain_s"] = drained
            fixed[label] = {"of_max_rps": best, "fraction": 0.7, **fx}
            log(
                f"  {label:<21} rate {rate:.0f}/s (70% of {best:.0f}): got {fx['rps']:.0f}/s  "
                f"p50 {fx['p50_ms']:.2f} ms  p99 {fx['p99_ms']:.2f} ms (from the write: p99 "
                f"{fx['service_p99_ms']:.2f} ms)  non-2xx {fx['non_2xx']}"
            )

        backlog = _backlog(st)
        drain_s = _wait_drained(st, timeout_s=180)
        prefix = f"+{INGEST_FROM}"[:8]
        census = _message_census(st, prefix)
        census["acked_2xx"] = acked
        census["replies_at_fake_twilio"] = created(fake_base, since=1 << 30)[0] - 1  # minus the smoke test
        deliveries = delivery_census(st, prefix)
        time.sleep(2)
        census["replies_at_fake_twilio_2s_later"] = created(fake_base, since=1 << 30)[0] - 1
        unknown = int(st.client().hget("gw:counters", "unknown_number") or 0)
        log(f"  drain after load: {drain_s} s; census {census}; reply delivery statuses {deliveries}")
        return {
            "engine": engine_used,
            "duration_s": duration_s,
            "customers": customers,
            "worker_concurrency": worker_concurrency,
            "lines": available,
            "lines_topped_up": top_ups,
            "lines_used": next_line,
            "lines_wrapped": next_line > available,
            "generate_s": gen_s,
            "smoke": check,
            "warmup": warmup,
            "runs": runs,
            "ratios": ratios,
            "fixed_rate": fixed,
            "backlog_at_end_of_load": backlog,
            "drain_s": drain_s,
            "backlog_after_drain": _backlog(st),
            "census": census,
            "reply_delivery_statuses": deliveries,
            "unknown_number_count": unknown,
            "log_findings": st.log_findings(),
        }


# ---------------------------------------------------------------------------------------
# 2. Latency: webhook in -> Twilio create out


class LatencyRig:
    def __init__(self, st: Stack, public: str, token: str, fake_base: str) -> None:
        self.st, self.public, self.token, self.fake_base = st, public, token, fake_base
        self.next_customer = 0

    def lines(self, name: str, count: int) -> tuple[load.Target, int]:
        """`count` requests from `count` new customers; returns the target and its first customer."""
        first = self.next_customer
        self.next_customer += count
        path = self.st.tmp / f"{name}.txt"
        write_lines(path, self.public + PATH, self.token, count, LATENCY_FROM + first, None, None)
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

    def open_loop(self, name: str, rate: float, duration_s: float) -> dict[str, Any]:
        n = max(1, round(rate * duration_s))
        target, first = self.lines(name, n)
        before, _ = created(self.fake_base, since=1 << 30)
        send_log = self.st.tmp / f"{name}.sendlog"
        r = load.run(target, concurrency=32, rate=rate, requests=n, engine="python", send_log=str(send_log))
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
        token = secrets.token_hex(16)
        public, fake_pid, fake_base = _twilio_stack(st, token)
        admin = st.admin_token()
        web, base = st.start_web(int(public.rsplit(":", 1)[1]))
        create_agent(base, admin, "Bench SMS", channels={"numbers": [AGENT_NUMBER]}, debounce_ms=0)
        rig = LatencyRig(st, public, token, fake_base)
        log(f"webhook latency: webhook -> Twilio create, {flood} turns for the maximum, {duration_s:g} s at 70%")
        configs: dict[str, Any] = {}
        for conc in worker_concurrencies:
            worker = st.start_worker(conc)
            smoke(public, token, fake_base)
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
            "pids": {"web": web.pid, "faketwilio": fake_pid},
            "log_findings": st.log_findings(),
        }


def run(duration_s: float = 8.0, *, engine: str = "auto", log: Any = print) -> dict[str, Any]:
    return {
        "ingest": run_ingest(duration_s, engine=engine, log=log),
        "latency": run_latency(log=log),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
