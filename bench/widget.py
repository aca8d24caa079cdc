"""The web chat widget (SPEC §13/§14): reply latency as the widget sees it, idle streams one web
process holds, and the size of widget.js.

What runs: a private redis-server, one `chatgw web`, one `chatgw worker --concurrency 4` with the
offline responder (a zero-latency LLM). The widget's abuse limits are turned off for the run
(`WIDGET_*=0`): one machine plays many visitors from one IP.

1. **Reply latency, protocol level**: `visitors` widget visitors, each with its
   `/widget/v1/events` stream open (an asyncio SSE client, as EventSource reads it); each in turn
   posts `POST /widget/v1/messages` and the clock stops when the agent's `message` event arrives
   on its stream: p50/p95/p99 over `messages` replies, one in flight at a time.
2. **Reply latency in a real browser** (when Debian's chromium is installed): a page on another
   origin embeds widget.js; the visitor types and presses Enter; the clock (in the page,
   `performance.now()`) stops when the reply's bubble is in the widget's shadow DOM
   (MutationObserver): p50/p95 over `browser_messages` replies.
3. **Idle streams**: `streams` visitors each open their stream (raw asyncio sockets, read up to
   the stream's first `retry:` line, then left idle); the web process's VmRSS before and after,
   per stream; then every stream is checked still open (a keepalive or nothing, not a close).
4. **widget.js**: bytes as served, and gzip-compressed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.stack import ROOT, Stack, rss_mib, stack

ORIGIN = "http://bench.example"
LIMITS_OFF = {
    "WIDGET_REQUESTS_PER_MINUTE_IP": "0",
    "WIDGET_MESSAGES_PER_MINUTE_IP": "0",
    "WIDGET_MESSAGES_PER_MINUTE_VISITOR": "0",
    "WIDGET_SESSIONS_PER_HOUR_IP": "0",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(_pct(ms, 0.95), 2),
        "p99_ms": round(_pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


def _widget_agent(base: str, token: str, origins: list[str]) -> str:
    body = {"name": "Bench widget", "widget": {"enabled": True, "allowed_origins": origins}}
    r = httpx.post(f"{base}/v1/agents", json=body, headers={"API-Token": token}, timeout=10)
    r.raise_for_status()
    return str(r.json()["data"]["widget"]["public_key"])


async def _start(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    r = await client.post("/widget/v1/sessions", json={"key": key}, headers={"Origin": ORIGIN})
    r.raise_for_status()
    return r.json()["data"]  # type: ignore[no-any-return]


async def _reply_latency(base: str, key: str, visitors: int, messages: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        people = [await _start(client, key) for _ in range(visitors)]
        queues: list[asyncio.Queue[dict[str, Any]]] = [asyncio.Queue() for _ in people]
        opened = [asyncio.Event() for _ in people]

        async def listen(i: int) -> None:
            url = f"/widget/v1/events?visitor_token={people[i]['visitor_token']}"
            async with client.stream("GET", url, headers={"Origin": ORIGIN}, timeout=None) as r:
                event = ""
                async for line in r.aiter_lines():
                    if line.startswith("retry:"):
                        opened[i].set()
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "message":
                        data = json.loads(line[6:])
                        if data["role"] == "agent":
                            queues[i].put_nowait(data)

        tasks = [asyncio.create_task(listen(i)) for i in range(visitors)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 30)
        ms: list[float] = []
        try:
            for n in range(messages):
                i = n % visitors
                headers = {"Origin": ORIGIN, "Authorization": f"Bearer {people[i]['visitor_token']}"}
                t0 = time.perf_counter()
                r = await client.post("/widget/v1/messages", json={"content": f"question {n}"}, headers=headers)
                r.raise_for_status()
                await asyncio.wait_for(queues[i].get(), 30)
                ms.append((time.perf_counter() - t0) * 1000)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return _summary(ms)


BROWSER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bench</title></head><body>
<script src="{base}/widget.js" data-key="{key}" async></script></body></html>"""

MEASURE = """async (text) => {
  const root = document.querySelector('#chatgw-widget').shadowRoot;
  const log = root.querySelector('.log');
  const send = root.querySelector('.send');
  // The reply can render before the previous send's answer re-enables the button.
  while (send.disabled) await new Promise((r) => setTimeout(r, 5));
  const before = log.querySelectorAll('.msg.agent').length;
  const input = root.querySelector('textarea');
  const done = new Promise((resolve, reject) => {
    const seen = new MutationObserver(() => {
      if (log.querySelectorAll('.msg.agent').length > before) { seen.disconnect(); resolve(performance.now()); }
    });
    seen.observe(log, {childList: true});
    setTimeout(() => reject(new Error('no reply rendered within 30 s')), 30000);
  });
  input.value = text;
  const t0 = performance.now();
  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
  return (await done) - t0;
}"""


def _browser_latency(base: str, token: str, messages: int) -> dict[str, Any] | str:
    """In chromium, with an agent of its own allowing the page's origin."""
    import http.server
    import shutil
    import threading

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return "skipped: Debian's chromium is not installed"
    from playwright.sync_api import sync_playwright

    from gateway.cli.redis_server import free_port

    port = free_port()
    key = _widget_agent(base, token, [f"http://localhost:{port}"])
    payload = BROWSER_PAGE.format(base=base, key=key).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ms: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://localhost:{port}/")
            page.get_by_role("button", name="Open chat").click()
            page.get_by_label("Message", exact=True).wait_for()
            for n in range(messages + 1):
                took = float(page.evaluate(MEASURE, f"browser question {n}"))
                if n:  # the first one also opens the session
                    ms.append(took)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return _summary(ms)


async def _open_stream(host: str, port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /widget/v1/events?visitor_token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Origin: {ORIGIN}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line:
            raise RuntimeError("stream closed before it opened")
        if line.startswith(b"retry:"):
            return reader, writer


async def _idle_streams(base: str, key: str, count: int, web_pid: int) -> dict[str, Any]:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        people = []
        for i in range(0, count, 50):
            people += await asyncio.gather(*(_start(client, key) for _ in range(min(50, count - i))))
    await asyncio.sleep(1)
    rss_before = rss_mib(web_pid)
    conns = []
    t0 = time.perf_counter()
    for i in range(0, count, 100):
        conns += await asyncio.gather(*(_open_stream(host, port, p["visitor_token"]) for p in people[i : i + 100]))
    open_s = time.perf_counter() - t0
    await asyncio.sleep(2)
    rss_after = rss_mib(web_pid)
    async with httpx.AsyncClient(timeout=10) as client:
        gauge = (await client.get(base + "/metrics")).text
    open_gauge = next(
        (float(line.split()[-1]) for line in gauge.splitlines() if line.startswith("chatgw_sse_streams_open ")), -1.0
    )
    closed = sum(1 for r, _ in conns if r.at_eof())
    for _, writer in conns:
        writer.close()
    extra = rss_after - rss_before
    return {
        "streams": count,
        "opened_in_s": round(open_s, 2),
        "web_rss_before_mib": round(rss_before, 1),
        "web_rss_after_mib": round(rss_after, 1),
        "extra_mib": round(extra, 1),
        "kib_per_stream": round(extra * 1024 / count, 1),
        "sse_streams_open_gauge": open_gauge,
        "closed_by_server": closed,
    }


def _script_size(base: str) -> dict[str, int]:
    body = httpx.get(base + "/widget.js", timeout=10).content
    source = (ROOT / "gateway" / "widget" / "static" / "widget.js").read_bytes()
    assert body == source
    return {"bytes": len(body), "gzip_bytes": len(gzip.compress(body, 9))}


def run(
    *, visitors: int = 20, messages: int = 300, browser_messages: int = 30, streams: int = 1000, log: Any = print
) -> dict[str, Any]:
    with stack() as st:
        return _run(st, visitors, messages, browser_messages, streams, log)


def _run(st: Stack, visitors: int, messages: int, browser_messages: int, streams: int, log: Any) -> dict[str, Any]:
    st.extra_env.update(LIMITS_OFF)
    web, base = st.start_web()
    st.start_worker(4)
    token = st.admin_token()
    key = _widget_agent(base, token, [ORIGIN])
    out: dict[str, Any] = {"script": _script_size(base)}
    log(f"widget.js: {out['script']}")
    out["reply_latency"] = asyncio.run(_reply_latency(base, key, visitors, messages))
    log(f"reply latency (SSE client): {out['reply_latency']}")
    out["browser_reply_latency"] = _browser_latency(base, token, browser_messages)
    log(f"reply latency (browser): {out['browser_reply_latency']}")
    out["idle_streams"] = asyncio.run(_idle_streams(base, key, streams, web.pid))
    log(f"idle streams: {out['idle_streams']}")
    findings = st.log_findings()
    if findings:
        out["log_findings"] = findings
    return out
