"""Operator console: page render time at scale, stored -> visible latency in a real browser,
idle SSE streams per web process.

`python -m bench.console [--sessions N] [--budget S] [--thread N] [--streams N] [--samples N]`
(also `python -m bench console`).

What runs: a private redis-server (EmbeddedRedis, appendonly off), then:

1. Data, generated straight into Redis through the store's own operations (`open_session`, the
   Lua that keeps indexes and counters; no HTTP): --sessions sessions (default 1,000,000) or
   as many as --budget seconds allow (pipelined: many operations in flight on the
   multiplexed connection), across sms/whatsapp/api; 1,000 of them ask for help; one session
   gets a --thread message thread (default 1,000; customer, agent, operator and whisper
   entries) through `sessions.commit`.
2. Server render time, in this process (the real app through Starlette's TestClient, a
   signed-in operator): the sessions page (first page, 50 rows with previews), a filtered
   page (status + channel), the help inbox, and the session page with the long thread;
   p50/p95/max over 30 requests each. Goal (SPEC §13 / issue 11): <= 100 ms each.
3. Stored -> visible: a real `chatgw web` on the same Redis and Debian's chromium (Playwright)
   with the session page open, and another page with the sessions list open; --samples
   times a whisper is written through `agent_core.support.run_command` (the store, as the
   API does), and a MutationObserver in each page records when its entry / row appears.
   Latency = browser clock at insertion - wall clock just before the write (one machine,
   one clock). p50/p95/max. Goal: p95 <= 1 s.
4. Idle SSE streams: --streams console-wide streams (`/console/events`, what each open
   sessions page holds) opened against that web process by one asyncio client; VmRSS of
   the web process before and after, /healthz latency with them open. Goal: >= 1,000
   streams, < 100 MB extra.
No asserts: it prints figures and the JSON on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import time
from typing import Any

import httpx

from agent_core.models import Channel, Role, now_iso
from agent_core.settings import AppSettings, LLMSettings, RedisSettings, Settings, TwilioSettings
from agent_core.store import AsyncStore, Change, Store, agents, sessions
from agent_core.store.connection import async_client, sync_client
from agent_core.store.multiplex import MultiplexedRedis
from agent_core.support import Command, run_command
from bench.stack import Stack, create_agent, rss_mib, stack
from workers.rqwire import RQJobFormat

CHANNELS = (Channel.sms, Channel.whatsapp, Channel.api)
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(pct(values, 0.95), 2),
        "max_ms": round(max(values), 2),
        "n": len(values),
    }


async def generate(url: str, agent_id: str, target: int, budget_s: float, log: Any) -> dict[str, Any]:
    """Open sessions through the store until `target` or `budget_s`, many operations in flight."""
    client = async_client(url)
    fast = MultiplexedRedis(url)
    store = AsyncStore(client, fast, RQJobFormat())
    made = 0
    started = time.monotonic()
    deadline = started + budget_s

    async def one(i: int) -> None:
        await store.run(
            sessions.open_session(
                agent_id=agent_id,
                customer_id=f"+1555{i:07d}",
                channel=CHANNELS[i % 3],
                input_fields=None,
                context=(),
                welcome=None,
            )
        )

    batch = 2000
    try:
        while made < target and time.monotonic() < deadline:
            n = min(batch, target - made)
            await asyncio.gather(*(one(made + k) for k in range(n)))
            made += n
            if made % 100_000 < batch:
                log(f"  {made:,} sessions ({made / (time.monotonic() - started):,.0f}/s)")
    finally:
        await fast.close()
        await client.aclose()
    took = time.monotonic() - started
    return {"sessions": made, "seconds": round(took, 1), "per_s": round(made / took)}


def help_and_thread(st: Stack, agent_id: str, helped: int, thread: int) -> str:
    """Mark the newest `helped` sessions as asking for help; give one a `thread`-message thread."""
    store = Store(sync_client(st.redis_url), RQJobFormat())
    found, _ = store.run(sessions.list_page(sessions.SessionFilter(), limit=helped, cursor=None))
    at = now_iso()
    for s in found:
        store.run(sessions.commit(s.id, Change(set={"help_requested": True, "help_requested_at": at})))
    big = found[-1].id
    roles = (Role.customer, Role.agent, Role.operator, Role.whisper)
    for start in range(0, thread, 100):
        msgs = []
        for i in range(start, min(thread, start + 100)):
            role = roles[i % 4]
            extra: dict[str, Any] = {"author": "alice@example.com"} if role in (Role.operator, Role.whisper) else {}
            if role is Role.whisper:
                extra["private"] = True
            text = f"Message {i}: my order #{1000 + i} has not arrived yet, could you check where it is?"
            msgs.append(sessions.new_message(role, text, created_at=at, **extra))
        store.run(sessions.commit(big, Change(messages=msgs, touch=True)))
    return big


def render_times(st: Stack, operator: str, big: str) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    settings = Settings(
        app=AppSettings(_env_file=None, public_base_url="http://testserver", secret_key="bench-secret-key-0123456789"),  # type: ignore[call-arg]
        redis=RedisSettings(_env_file=None, url=st.redis_url),  # type: ignore[call-arg]
        twilio=TwilioSettings(_env_file=None, account_sid=None, auth_token=None),  # type: ignore[call-arg]
        llm=LLMSettings(_env_file=None),  # type: ignore[call-arg]
    )
    out: dict[str, Any] = {}
    with TestClient(create_app(settings, st.redis_url)) as c:
        form = c.get("/console/login")
        csrf = CSRF_FIELD.search(form.text).group(1)  # type: ignore[union-attr]
        assert c.post("/console/login", data={"token": operator, "csrf_token": csrf}).status_code == 200
        pages = {
            "sessions page (50 rows)": "/console",
            "filtered (status=active, channel=sms)": "/console?status=active&channel=sms",
            "help inbox (oldest 100 of 1,000)": "/console?view=inbox",
            "session page (long thread)": f"/console/sessions/{big}",
        }
        for label, path in pages.items():
            times = []
            size = 0
            for _ in range(32):
                t0 = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (path, r.status_code)
                size = len(r.content)
            out[label] = {**summary(times[2:]), "bytes": size}
    return out


OBSERVER = """(selector) => {
  window.__seen = [];
  new MutationObserver((records) => {
    for (const rec of records) for (const node of rec.addedNodes) {
      if (node.nodeType === 1) { window.__seen.push([node.id + " " + node.textContent, Date.now()]); }
    }
  }).observe(document.querySelector(selector), {childList: true, subtree: true});
}"""


def visible_latency(st: Stack, base: str, operator: str, agent_id: str, samples: int, log: Any) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    store = Store(sync_client(st.redis_url), RQJobFormat())
    agent = store.run(agents.get(agent_id))
    assert agent is not None
    sid = store.run(
        sessions.open_session(
            agent_id=agent_id,
            customer_id="+15559999999",
            channel=Channel.sms,
            input_fields=None,
            context=(),
            welcome=None,
        )
    ).session_id
    assert sid
    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise SystemExit("bench.console needs Debian's chromium (apt-get install chromium, or make test)")
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        session_page = ctx.new_page()
        session_page.goto(f"{base}/console/login")
        session_page.get_by_label("Token").fill(operator)
        session_page.get_by_role("button", name="Sign in").click()
        session_page.wait_for_selector("#stats")
        list_page = ctx.new_page()
        list_page.goto(f"{base}/console?agent={agent_id}")
        list_page.wait_for_selector("#rows", state="attached")
        session_page.goto(f"{base}/console/sessions/{sid}")
        session_page.wait_for_selector("#thread", state="attached")
        time.sleep(1.0)  # both streams open
        session_page.evaluate(OBSERVER, "#thread")
        list_page.evaluate(OBSERVER, "#rows")
        written: list[tuple[str, float]] = []
        for i in range(samples):
            text = f"bench-whisper-{i}-{time.time_ns()}"
            t0 = time.time() * 1000
            store.run(run_command(session_id=sid, agent=agent, operator="bench", command=Command.whisper, message=text))
            written.append((text, t0))
            time.sleep(0.25)
        time.sleep(2.0)
        for name, page in (("session page", session_page), ("sessions list", list_page)):
            seen = page.evaluate("window.__seen")
            lat = []
            missing = 0
            for text, t0 in written:
                # The thread shows the whisper; the list re-renders the session's row (a
                # whisper is private, so the row's preview does not show it).
                hit = next(
                    (
                        t
                        for content, t in seen
                        if (
                            text in content if name == "session page" else content.startswith(f"row-{sid} ") and t >= t0
                        )
                    ),
                    None,
                )
                if hit is None:
                    missing += 1
                else:
                    lat.append(hit - t0)
            out[name] = {**(summary(lat) if lat else {}), "missing": missing}
            log(f"  {name}: {out[name]}")
        browser.close()
    return out


async def idle_streams(base: str, pid: int, operator_cookie: str, count: int) -> dict[str, Any]:
    host, port = base.removeprefix("http://").split(":")
    before = rss_mib(pid)
    writers = []
    request = (
        f"GET /console/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: {operator_cookie}\r\n\r\n"
    ).encode()
    opened = 0
    failed = 0
    started = time.monotonic()

    async def one() -> None:
        nonlocal opened, failed
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"retry:"), timeout=60)
            if b" 200 " in head.split(b"\r\n", 1)[0]:
                opened += 1
                writers.append((reader, writer))
            else:
                failed += 1
                writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            failed += 1

    for start in range(0, count, 100):
        await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    open_s = time.monotonic() - started
    await asyncio.sleep(3)
    after = rss_mib(pid)
    async with httpx.AsyncClient() as c:
        health = []
        for _ in range(20):
            t0 = time.perf_counter()
            await c.get(f"{base}/healthz")
            health.append((time.perf_counter() - t0) * 1000)
    for _, writer in writers:
        writer.close()
    extra_mb = (after - before) * 1.048576
    return {
        "streams_open": opened,
        "failed": failed,
        "seconds_to_open": round(open_s, 1),
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "extra_mb": round(extra_mb, 1),
        "kb_per_stream": round(extra_mb * 1000 / max(opened, 1), 1),
        "healthz_with_streams_open": summary(health),
    }


def run(
    target: int = 1_000_000,
    budget_s: float = 120,
    thread: int = 1000,
    streams: int = 1000,
    samples: int = 30,
    log: Any = print,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with stack() as st:
        web, base = st.start_web()
        admin = st.admin_token()
        operator = st.chatgw("tokens", "create", "--name", "alice@example.com", "--role", "operator").split()[-1]
        agent_id = create_agent(base, admin, name="Bench Console")
        log(f"generating up to {target:,} sessions (budget {budget_s:g} s)")
        results["data"] = asyncio.run(generate(st.redis_url, agent_id, target, budget_s, log))
        big = help_and_thread(st, agent_id, 1000, thread)
        results["data"].update({"help_requested": 1000, "long_thread_messages": thread})
        log(f"data: {results['data']}")
        results["render"] = render_times(st, operator, big)
        for label, r in results["render"].items():
            log(f"  {label}: {r}")
        results["stored_to_visible"] = visible_latency(st, base, operator, agent_id, samples, log)
        with httpx.Client(base_url=base) as c:
            form = c.get("/console/login")
            csrf = CSRF_FIELD.search(form.text).group(1)  # type: ignore[union-attr]
            c.post("/console/login", data={"token": operator, "csrf_token": csrf})
            cookie = f"chatgw_console={c.cookies['chatgw_console']}"
        results["idle_sse"] = asyncio.run(idle_streams(base, web.pid, cookie, streams))
        log(f"idle SSE: {results['idle_sse']}")
        st.stop_proc(web)
        results["log_findings"] = st.log_findings()
    return results


def table(r: dict[str, Any]) -> list[str]:
    d = r["data"]
    out = [
        f"Console: {d['sessions']:,} sessions generated through the store in {d['seconds']} s ({d['per_s']:,}/s), "
        f"{d['help_requested']:,} asking for help, one {d['long_thread_messages']:,}-message thread",
        f"  {'server render':<40}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'KB':>8}",
    ]
    for label, x in r["render"].items():
        out.append(f"  {label:<40}{x['p50_ms']:>9.1f}{x['p95_ms']:>9.1f}{x['max_ms']:>9.1f}{x['bytes'] / 1000:>8.0f}")
    for label, x in r["stored_to_visible"].items():
        if "p95_ms" in x:
            out.append(
                f"  stored -> visible, {label:<22} p50 {x['p50_ms']:.0f} ms, p95 {x['p95_ms']:.0f} ms, "
                f"max {x['max_ms']:.0f} ms (n={x['n']}, missing {x['missing']})"
            )
    s = r["idle_sse"]
    out.append(
        f"  idle SSE: {s['streams_open']:,} console streams open ({s['failed']} failed) in {s['seconds_to_open']} s; "
        f"web RSS {s['rss_before_mib']} -> {s['rss_after_mib']} MiB = +{s['extra_mb']} MB "
        f"({s['kb_per_stream']} KB/stream); /healthz p95 {s['healthz_with_streams_open']['p95_ms']} ms with them open"
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.console")
    p.add_argument("--sessions", type=int, default=1_000_000)
    p.add_argument("--budget", type=float, default=120, help="seconds to spend generating sessions")
    p.add_argument("--thread", type=int, default=1000)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--samples", type=int, default=30)
    a = p.parse_args()
    r = run(a.sessions, a.budget, a.thread, a.streams, a.samples)
    print("\n".join(table(r)))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
