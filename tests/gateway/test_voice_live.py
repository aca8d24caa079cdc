"""Voice escalation against a real web server (uvicorn on a socket) and a real streaming
OpenAI-compatible server (Server-Sent Events, paced): ConversationRelay with a real WebSocket
client — signed handshake, forged one refused, tokens streamed before the model finished,
interrupt truncates the transcript, `end` frame — and a slow model during a gather turn
(filler + Redirect, then the answer; the webhook keeps to its budget)."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agent_core.settings import LLMSettings, Settings
from agent_core.store import Store, health
from channels.twilio import relay as frames
from channels.twilio.voice import voice_form
from gateway.app import create_app
from tests.agent_core.test_llm_streaming import event, sse, text_events
from tests.conftest import PUBLIC_URL, drain
from tests.fakes import completion, last_user_text
from tests.helpers import serving
from workers import context

ACCOUNT = "AC" + "0" * 32
AGENT_NUMBER = "+15550001111"
CUSTOMER = "+15557654321"
REPLY = ["Our ", "refund ", "policy ", "is ", "thirty ", "days ", "from ", "delivery."]


@dataclass
class PacedLLM:
    """Streams REPLY with the first token after `first_s` and the last after `last_s`;
    "bye" gets an `end_call` tool call. Non-streamed requests (summaries) answer at once."""

    first_s: float = 0.3
    last_s: float = 1.0
    finished_at: list[float] = field(default_factory=list)
    first_at: list[float] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            if not body.get("stream"):
                return JSONResponse(completion("Summary: the customer asked about refunds."))
            said = last_user_text(body)
            answered_tool = body["messages"][-1]["role"] == "tool"
            if "bye" in said.lower() and not answered_tool:
                call = {
                    "index": 0,
                    "id": "call_end1",
                    "type": "function",
                    "function": {"name": "end_call", "arguments": "{}"},
                }
                events = [
                    event({"role": "assistant", "content": None, "tool_calls": [call]}),
                    event({}, finish="tool_calls"),
                ]
                return StreamingResponse(iter(sse(events)), media_type="text/event-stream")
            pieces = ["Goodbye!"] if answered_tool else REPLY
            return StreamingResponse(self._paced(sse(text_events(*pieces))), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    async def _paced(self, parts: list[bytes]) -> AsyncIterator[bytes]:
        # parts: role event, the pieces, finish, usage, [DONE]
        pieces = len(parts) - 4
        gap = (self.last_s - self.first_s) / max(1, pieces - 1)
        yield parts[0]
        await asyncio.sleep(self.first_s)
        for index, part in enumerate(parts[1:]):
            if index == 0:
                self.first_at.append(time.monotonic())
            elif index < pieces:
                await asyncio.sleep(gap)
            if index == pieces - 1:
                self.finished_at.append(time.monotonic())
            yield part


@pytest.fixture
def paced() -> Iterator[tuple[PacedLLM, str]]:
    llm = PacedLLM()
    with serving(llm.app()) as url:
        yield llm, url


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def live_settings(settings: Settings, paced: tuple[PacedLLM, str]) -> Settings:
    llm = LLMSettings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key="sk-test",
        openai_base_url=f"{paced[1]}/v1",
        llm_model="gpt-test",
        llm_timeout_s=10,
        llm_max_retries=0,
    )
    return settings.model_copy(update={"llm": llm})


@pytest.fixture
def live(live_settings: Settings, redis_url: str) -> Iterator[tuple[Any, str]]:
    wctx = context.WorkerContext(settings=live_settings, redis_url=redis_url)
    context.use(wctx)
    app = create_app(live_settings, redis_url)
    with serving(app) as url:
        yield app, url
    context.use(None)
    wctx.close()


def start_call(base: str, admin: dict[str, str], transport: str) -> tuple[str, str]:
    with httpx.Client(base_url=base, headers=admin, timeout=10) as http:
        agent = http.post(
            "/v1/agents",
            json={
                "name": "Acme",
                "escalation": {"enabled": True, "from_number": AGENT_NUMBER, "voice_transport": transport},
            },
        ).json()["data"]
        sid = http.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "u1"}).json()["data"]["id"]
        r = http.post(f"/v1/chat/session/{sid}/call", json={"to": CUSTOMER, "reason": "refund question"})
        assert r.status_code == 202, r.text
        return r.json()["data"]["id"], sid


def signed_post(base: str, token: str, path: str, form: dict[str, str], query: str = "") -> httpx.Response:
    url = PUBLIC_URL + path + (f"?{query}" if query else "")
    sig = RequestValidator(token).compute_signature(url, form)
    target = base + path + (f"?{query}" if query else "")
    return httpx.post(target, data=form, headers={"X-Twilio-Signature": sig}, timeout=20)


@pytest.fixture
def admin_live(live: tuple[Any, str], redis_url: str) -> dict[str, str]:
    from agent_core.store import tokens
    from agent_core.store.connection import sync_client
    from agent_core.store.tokens import TokenRole

    store = Store(sync_client(redis_url))
    secret = store.run(tokens.create("admin@example.com", TokenRole.admin))[0]
    return {"API-Token": secret}


def test_conversation_relay_streams_tokens_handles_interrupt_and_ends(
    live: tuple[Any, str], admin_live: dict[str, str], paced: tuple[PacedLLM, str], redis_url: str
) -> None:
    from agent_core.store.connection import sync_client

    base = live[1]
    llm = paced[0]
    store = Store(sync_client(redis_url))
    token = store.run(health.dev_twilio_token())
    call_id, _ = start_call(base, admin_live, "conversation_relay")
    drain(context.get())
    call_sid = "CA" + "a" * 32
    answer = signed_post(
        base,
        token,
        f"/twilio/voice/{call_id}",
        voice_form(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER),
    )
    relay = ET.fromstring(answer.text).find("Connect/ConversationRelay")
    assert relay is not None
    advertised = f"wss://gw.example.com/twilio/voice/{call_id}/relay"
    assert relay.get("url") == advertised and "Acme" in (relay.get("welcomeGreeting") or "")
    socket_url = f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/twilio/voice/{call_id}/relay"
    with pytest.raises(InvalidStatus) as refused:
        connect(socket_url, additional_headers={"X-Twilio-Signature": "forged"}).close()
    assert refused.value.response.status_code == 403
    signature = RequestValidator(token).compute_signature(advertised, {})
    with connect(socket_url, additional_headers={"X-Twilio-Signature": signature}) as ws:
        ws.send(frames.setup_message(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER))
        ws.send(frames.prompt_message("What is your refund policy?"))
        first = frames.read_sent(ws.recv(timeout=5))
        first_at = time.monotonic()
        assert first.kind == "text" and first.token == REPLY[0]
        tokens = [first.token]
        while True:
            sent = frames.read_sent(ws.recv(timeout=5))
            if sent.last:
                break
            tokens.append(sent.token)
        # The first token reached the caller before the model had finished its answer.
        assert first_at < llm.finished_at[0]
        assert first_at - llm.first_at[0] < 0.2
        assert "".join(tokens) == "".join(REPLY)
        # Barge-in: a new question, interrupted after two words.
        ws.send(frames.prompt_message("And for sale items?"))
        frames.read_sent(ws.recv(timeout=5))
        ws.send(frames.interrupt_message("Our refund", 400))
        time.sleep(0.4)
        ws.send(frames.dtmf_message("1"))
        while not frames.read_sent(ws.recv(timeout=5)).last:
            pass
        ws.send(frames.prompt_message("ok bye"))
        while True:
            sent = frames.read_sent(ws.recv(timeout=5))
            if sent.kind == "end":
                assert json.loads(sent.handoff)["call_id"] == call_id
                break
    with httpx.Client(base_url=base, headers=admin_live) as http:
        call = http.get(f"/v1/calls/{call_id}").json()["data"]
    script = [(t["role"], t["text"], t.get("interrupted", False)) for t in call["transcript"]]
    assert script[0][0] == "agent" and "Acme" in script[0][1]
    assert script[1] == ("customer", "What is your refund policy?", False)
    assert script[2] == ("agent", "".join(REPLY), False)
    assert script[3] == ("customer", "And for sale items?", False)
    assert script[4] == ("agent", "Our refund", True)
    assert script[5][0] == "customer" and "pressed 1" in script[5][1]
    assert script[-2] == ("customer", "ok bye", False)
    assert script[-1][0] == "agent" and "Goodbye" in script[-1][1]


def test_slow_model_in_a_gather_turn_gets_a_filler_and_redirect_then_the_answer(
    live: tuple[Any, str], admin_live: dict[str, str], paced: tuple[PacedLLM, str], redis_url: str
) -> None:
    from agent_core.store.connection import sync_client

    app, base = live
    llm = paced[0]
    llm.first_s, llm.last_s = 0.6, 0.8
    app.state.voice.deps.budget_s = 0.4
    store = Store(sync_client(redis_url))
    token = store.run(health.dev_twilio_token())
    call_id, _ = start_call(base, admin_live, "gather")
    drain(context.get())
    call_sid = "CA" + "b" * 32
    form = voice_form(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER)
    assert ET.fromstring(signed_post(base, token, f"/twilio/voice/{call_id}", form).text).find("Gather") is not None
    started = time.monotonic()
    r = signed_post(
        base, token, f"/twilio/voice/{call_id}/turn", {**form, "SpeechResult": "What is your refund policy?"}
    )
    took = time.monotonic() - started
    root = ET.fromstring(r.text)
    redirect = root.find("Redirect")
    assert redirect is not None and "One moment" in (root.findtext("Say") or "")
    assert took < 0.4 + 0.3, took
    redirects = 0
    while redirect is not None:
        redirects += 1
        path, _, query = (redirect.text or "").removeprefix(PUBLIC_URL).partition("?")
        started = time.monotonic()
        r = signed_post(base, token, path, form, query)
        took = time.monotonic() - started
        assert took < 0.4 + 0.3, took
        root = ET.fromstring(r.text)
        redirect = root.find("Redirect")
        if redirect is not None and "pending=" not in (redirect.text or ""):
            break
    assert 1 <= redirects <= 3
    assert "".join(REPLY) in " ".join(s.text or "" for s in root.iter("Say")), r.text
    assert root.find("Gather") is not None


def test_a_dropped_socket_keeps_what_was_sent_and_whispers_reach_the_voice_agent(
    live: tuple[Any, str], admin_live: dict[str, str], paced: tuple[PacedLLM, str], redis_url: str
) -> None:
    from agent_core.store.connection import sync_client

    base = live[1]
    llm = paced[0]
    store = Store(sync_client(redis_url))
    token = store.run(health.dev_twilio_token())
    call_id, sid = start_call(base, admin_live, "conversation_relay")
    drain(context.get())
    with httpx.Client(base_url=base, headers=admin_live) as http:
        r = http.post(f"/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "Offer a 10% voucher"})
        assert r.status_code == 200, r.text
    call_sid = "CA" + "c" * 32
    form = voice_form(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER)
    signed_post(base, token, f"/twilio/voice/{call_id}", form)
    advertised = f"wss://gw.example.com/twilio/voice/{call_id}/relay"
    socket_url = f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/twilio/voice/{call_id}/relay"
    signature = RequestValidator(token).compute_signature(advertised, {})
    with connect(socket_url, additional_headers={"X-Twilio-Signature": signature}) as ws:
        ws.send(frames.setup_message(call_sid=call_sid, account_sid=ACCOUNT, from_=AGENT_NUMBER, to=CUSTOMER))
        ws.send(frames.prompt_message("Can I get a refund?"))
        assert frames.read_sent(ws.recv(timeout=5)).token == REPLY[0]
    # The socket dropped mid-reply: the turn is cancelled and the transcript keeps what was sent.
    system = next(b for b in reversed(llm.bodies) if b.get("stream"))["messages"][0]["content"]
    assert "Offer a 10% voucher" in system and "phone call" in system

    def transcript() -> list[dict[str, Any]]:
        with httpx.Client(base_url=base, headers=admin_live) as http:
            return http.get(f"/v1/calls/{call_id}").json()["data"]["transcript"]  # type: ignore[no-any-return]

    deadline = time.monotonic() + 5
    while len(transcript()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    last = transcript()[-1]
    assert last["role"] == "agent" and last["interrupted"] is True
    assert last["text"].startswith("Our") and last["text"] != "".join(REPLY).strip()
    time.sleep(1.2)
    assert len(transcript()) == 3
