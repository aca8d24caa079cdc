"""Voice escalation (SPEC §8, §13): the gather turn webhook, ConversationRelay's first text
frame, and how many idle relay sockets one web process holds.

What runs: a private redis-server and `chatgw web` processes (no worker is needed: calls are
created through the API and driven by this process as Twilio would). Without Twilio
credentials the web checks signatures with the dev token kept in Redis; requests here are
signed with it for PUBLIC_BASE_URL = the web's own address.

1. Gather turn (`gather`): signed `POST /twilio/voice/{call_id}/turn` with a `SpeechResult`
   → TwiML (Say + Gather), one at a time, spread over `calls` calls (each call's transcript
   grows by two entries a turn, as a real call's does). LLM: the offline responder through
   the async seam (streams its words, no delay): the zero-latency model. p50/p99 of the
   client's request time (goal p50 ≤ 20 ms, p99 ≤ 60 ms).
2. ConversationRelay first frame (`relay`): one signed socket, `prompt` frames one at a time;
   time from sending the prompt to the first `text` frame (goal p50 ≤ 15 ms, p99 ≤ 50 ms).
3. Paced model (`relay_paced`): a second web process whose LLM is a local OpenAI-compatible
   server streaming its answer (first token after 300 ms, last after 2 s); first `text` frame
   minus the moment the server sent the first token (goal ≤ 20 ms), and the last token's
   arrival against the stream's end (tokens forwarded as they stream).
4. Idle sockets (`sockets`): `sockets` relay sockets opened (each its own call, signed
   handshake, setup frame) and left idle; the web process's RSS before and after, MiB per
   call; then one prompt on the last socket still answers.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from bench.stack import Stack, create_agent, rss_mib, stack
from channels.twilio import relay as frames
from channels.twilio.voice import voice_form
from gateway.cli.redis_server import free_port

ACCOUNT = "AC" + "0" * 32
AGENT_NUMBER = "+15550001111"
CUSTOMER = "+15557654321"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(_pct(ms, 0.9), 2),
        "p99_ms": round(_pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


class Web:
    def __init__(self, st: Stack, extra: dict[str, str] | None = None) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        st.extra_env = {"PUBLIC_BASE_URL": self.base, **(extra or {})}
        self.proc, _ = st.start_web(port)
        from agent_core.store import Store, health

        self.token = Store(st.client()).run(health.dev_twilio_token())
        self.validator = RequestValidator(self.token)
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def post(self, path: str, form: dict[str, str]) -> httpx.Response:
        sig = self.validator.compute_signature(self.base + path, form)
        return self.http.post(path, data=form, headers={"X-Twilio-Signature": sig})

    def new_call(self, admin: str, agent_id: str, n: int) -> str:
        headers = {"API-Token": admin}
        sid = self.http.post(
            "/v1/chat/session", json={"agent_uuid": agent_id, "customer_id": f"bench-{n}"}, headers=headers
        ).json()["data"]["id"]
        r = self.http.post(f"/v1/chat/session/{sid}/call", json={"to": CUSTOMER}, headers=headers)
        r.raise_for_status()
        return str(r.json()["data"]["id"])

    def form(self, call_sid: str, speech: str | None = None) -> dict[str, str]:
        return voice_form(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER, speech=speech)

    def socket(self, call_id: str) -> tuple[str, dict[str, str]]:
        advertised = f"ws://{self.base.removeprefix('http://')}/twilio/voice/{call_id}/relay"
        return advertised, {"X-Twilio-Signature": self.validator.compute_signature(advertised, {})}


def gather(web: Web, admin: str, agent_id: str, turns: int, calls: int) -> dict[str, Any]:
    ids = [web.new_call(admin, agent_id, n) for n in range(calls)]
    sids = {cid: "CA" + f"{n:032x}" for n, cid in enumerate(ids)}
    for cid in ids:
        assert web.post(f"/twilio/voice/{cid}", web.form(sids[cid])).status_code == 200
    ms: list[float] = []
    for i in range(turns + 20):
        cid = ids[i % calls]
        form = web.form(sids[cid], "How long does standard shipping take to my address?")
        started = time.perf_counter()
        r = web.post(f"/twilio/voice/{cid}/turn", form)
        took = (time.perf_counter() - started) * 1000
        assert r.status_code == 200 and "<Gather" in r.text, r.text
        if i >= 20:  # warm-up
            ms.append(took)
    return {"turns": turns, "calls": calls, **_summary(ms)}


async def _open(web: Web, call_id: str) -> Any:
    from websockets.asyncio.client import connect

    url, headers = web.socket(call_id)
    ws = await connect(url, additional_headers=headers, max_queue=None)
    await ws.send(frames.setup_message(call_sid="CA" + "e" * 32, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER))
    return ws


async def _prompt(ws: Any, text: str) -> tuple[float, float, str]:
    """Send a prompt; (ms to the first text frame, ms to the last, the reply)."""
    started = time.perf_counter()
    await ws.send(frames.prompt_message(text))
    first = 0.0
    parts: list[str] = []
    while True:
        sent = frames.read_sent(await ws.recv())
        if sent.kind != "text":
            continue
        if not first:
            first = (time.perf_counter() - started) * 1000
        parts.append(sent.token)
        if sent.last:
            return first, (time.perf_counter() - started) * 1000, "".join(parts)


def relay(web: Web, admin: str, agent_id: str, prompts: int) -> dict[str, Any]:
    async def run() -> list[float]:
        ws = await _open(web, web.new_call(admin, agent_id, 10_000))
        out = []
        for i in range(prompts + 20):
            first, _, _ = await _prompt(ws, "What does express shipping cost?")
            if i >= 20:
                out.append(first)
        await ws.close()
        return out

    return {"prompts": prompts, **_summary(asyncio.run(run()))}


class PacedLLM:
    """An OpenAI-compatible server (its own thread) streaming 20 tokens: the first after
    `first_s`, the last after `last_s`; records when it sent the first and the last."""

    def __init__(self, first_s: float = 0.3, last_s: float = 2.0) -> None:
        self.first_s, self.last_s = first_s, last_s
        self.first_sent: list[float] = []
        self.last_sent: list[float] = []
        self.port = free_port()

        async def chat(request: Request) -> Response:
            body = await request.json()
            if not body.get("stream"):
                return JSONResponse(_completion("ok"))
            return StreamingResponse(self._events(), media_type="text/event-stream")

        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    async def _events(self) -> AsyncIterator[bytes]:
        tokens = [f"word{i} " for i in range(20)]
        gap = (self.last_s - self.first_s) / (len(tokens) - 1)
        yield _sse(_chunk({"role": "assistant", "content": ""}))
        await asyncio.sleep(self.first_s)
        for i, tok in enumerate(tokens):
            if i:
                await asyncio.sleep(gap)
            yield _sse(_chunk({"content": tok}))
            (self.first_sent if i == 0 else self.last_sent).append(time.time())
        yield _sse(_chunk({}, "stop"))
        yield b"data: [DONE]\n\n"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "gpt-bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def relay_paced(st: Stack, admin: str, prompts: int) -> dict[str, Any]:
    llm = PacedLLM()
    try:
        web = Web(st, {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{llm.port}/v1"})
        agent_id = create_agent(
            web.base,
            admin,
            "Paced",
            escalation={"enabled": True, "from_number": AGENT_NUMBER},
            llm={"model": "gpt-bench"},
        )

        async def run() -> list[dict[str, float]]:
            ws = await _open(web, web.new_call(admin, agent_id, 20_000))
            out = []
            for _ in range(prompts):
                before = len(llm.first_sent)
                await ws.send(frames.prompt_message("Tell me about my order"))
                first_at = last_at = 0.0
                while True:
                    sent = frames.read_sent(await ws.recv())
                    if sent.kind == "text" and sent.token and not first_at:
                        first_at = time.time()
                    if sent.kind == "text" and sent.token:
                        last_at = time.time()
                    if sent.kind == "text" and sent.last:
                        break
                out.append(
                    {
                        "first_frame_after_first_token_ms": (first_at - llm.first_sent[before]) * 1000,
                        "last_frame_after_last_token_ms": (last_at - llm.last_sent[-1]) * 1000,
                        "first_frame_before_stream_end_ms": (llm.last_sent[-1] - first_at) * 1000,
                    }
                )
            await ws.close()
            return out

        rows = asyncio.run(run())
        st.stop_proc(web.proc)
    finally:
        llm.stop()
    keys = rows[0].keys()
    return {
        "prompts": prompts,
        **{k: round(statistics.median(r[k] for r in rows), 2) for k in keys},
        "worst_first_frame_after_first_token_ms": round(max(r["first_frame_after_first_token_ms"] for r in rows), 2),
    }


def sockets(web: Web, redis_url: str, agent_id: str, count: int) -> dict[str, Any]:
    from agent_core.calls import request_call
    from agent_core.models import Channel
    from agent_core.store import Store, agents, sessions
    from agent_core.store.connection import sync_client
    from workers.rqwire import RQJobFormat

    # Calls made straight in the store (the API would take most of the run).
    store = Store(sync_client(redis_url), RQJobFormat())
    agent = store.run(agents.get(agent_id))
    assert agent is not None
    ids = []
    for n in range(count):
        opened = store.run(
            sessions.open_session(
                agent_id=agent_id,
                customer_id=f"sock-{n}",
                channel=Channel.api,
                input_fields=None,
                context=(),
                welcome=None,
            )
        )
        assert opened.session_id is not None
        ids.append(
            store.run(request_call(session_id=opened.session_id, agent=agent, reason=None, to=CUSTOMER, by="bench")).id
        )

    async def run() -> dict[str, Any]:
        before = rss_mib(web.proc.pid)
        held = []
        for i in range(0, count, 50):
            held += await asyncio.gather(*(_open(web, cid) for cid in ids[i : i + 50]))
        await asyncio.sleep(1.0)
        after = rss_mib(web.proc.pid)
        first, _, reply = await _prompt(held[-1], "What does express shipping cost?")
        await asyncio.gather(*(ws.close() for ws in held))
        return {
            "sockets": len(held),
            "web_rss_before_mib": round(before, 1),
            "web_rss_after_mib": round(after, 1),
            "mib_per_call": round((after - before) / max(1, len(held)), 3),
            "prompt_while_held_first_frame_ms": round(first, 2),
            "answered": bool(reply),
        }

    return asyncio.run(run())


def run(
    turns: int = 300,
    prompts: int = 300,
    paced_prompts: int = 5,
    socket_count: int = 1000,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    with stack() as st:
        admin = st.admin_token()
        web = Web(st)
        agent_id = create_agent(
            web.base,
            admin,
            "Voice",
            llm={"provider": "offline"},
            escalation={"enabled": True, "from_number": AGENT_NUMBER},
        )
        log("voice: gather turns")
        out: dict[str, Any] = {"gather": gather(web, admin, agent_id, turns, calls=20)}
        log("voice: relay first frame")
        out["relay"] = relay(web, admin, agent_id, prompts)
        log(f"voice: {socket_count} idle relay sockets")
        out["sockets"] = sockets(web, st.redis_url, agent_id, socket_count)
        st.stop_proc(web.proc)
        log("voice: relay with a paced streaming model (first token 300 ms, last 2 s)")
        out["relay_paced"] = relay_paced(st, admin, paced_prompts)
        out["log_findings"] = st.log_findings()
    return out


def table(r: dict[str, Any]) -> list[str]:
    g, rl, p, s = r["gather"], r["relay"], r["relay_paced"], r["sockets"]
    return [
        "Voice (zero-latency LLM = offline responder streaming through the async seam)",
        f"  gather turn webhook (SpeechResult -> TwiML), {g['turns']} turns over {g['calls']} calls: "
        f"p50 {g['p50_ms']:.2f} ms, p90 {g['p90_ms']:.2f}, p99 {g['p99_ms']:.2f}, max {g['max_ms']:.1f}",
        f"  ConversationRelay prompt -> first text frame, {rl['prompts']} prompts: p50 {rl['p50_ms']:.2f} ms, "
        f"p90 {rl['p90_ms']:.2f}, p99 {rl['p99_ms']:.2f}, max {rl['max_ms']:.1f}",
        f"  paced model (first token 300 ms, last 2 s), {p['prompts']} prompts: first frame "
        f"{p['first_frame_after_first_token_ms']:.2f} ms after the first token (worst "
        f"{p['worst_first_frame_after_first_token_ms']:.2f}); first frame "
        f"{p['first_frame_before_stream_end_ms']:.0f} ms before the stream ended; "
        f"last frame {p['last_frame_after_last_token_ms']:.2f} ms after the last token",
        f"  idle relay sockets: {s['sockets']} held by one web process, RSS {s['web_rss_before_mib']} -> "
        f"{s['web_rss_after_mib']} MiB = {s['mib_per_call']:.3f} MiB per call; a prompt meanwhile: first frame "
        f"{s['prompt_while_held_first_frame_ms']:.2f} ms",
    ]
