"""Twilio Voice webhooks and the ConversationRelay socket of escalation calls (SPEC §8).

Every request is signed (same rules as the messaging webhooks: 403 and nothing changed
otherwise); an unknown or ended call gets polite TwiML and `<Hangup/>`, never a 5xx. A
gather turn gives the model `LLM_BUDGET_S`; past it the answer is a short filler and a
`<Redirect>` that collects the reply when it is ready (the turn goes on meanwhile and
leaves its reply in Redis, so any web process can serve the redirect).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent_core import calls as escalation
from agent_core import voice
from agent_core.llm import AsyncLLMProvider, AsyncOfflineProvider
from agent_core.models import Agent
from agent_core.settings import Settings
from agent_core.store import AsyncStore
from agent_core.store import calls as stored
from agent_core.store.calls import CallWrite
from agent_core.voice import CallView, VoiceDeps, VoiceReply
from channels.twilio import CONTENT_TYPE, EMPTY_RESPONSE, SIGNATURE_HEADER, InvalidTwilioRequest, verify, webhook_url
from channels.twilio import relay as frames
from channels.twilio.voice import (
    Speech,
    connect_relay,
    parse_call_status,
    parse_caller_turn,
    say_and_hang_up,
    say_and_listen,
    say_and_redirect,
)
from gateway.api.routing import Endpoint
from gateway.errors import BadRequest
from gateway.webhooks.twilio import request_form

log = structlog.get_logger("gateway.webhooks.voice")

POLL_S = 0.05
MAX_REDIRECTS = 3


@dataclass
class VoiceRuntime:
    """The web process's voice agent: the async LLM and the gather turns still running
    past their webhook's budget (kept referenced until they finish)."""

    deps: VoiceDeps
    http: httpx.AsyncClient | None = None
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    async def close(self) -> None:
        for task in list(self.running):
            task.cancel()
        if self.http is not None:
            await self.http.aclose()


def runtime(settings: Settings, store: AsyncStore, provider: AsyncLLMProvider | None = None) -> VoiceRuntime:
    """Built in the app's lifespan: the OpenAI SDK streaming over an httpx.AsyncClient when a
    key is configured, else the offline responder (`provider` overrides, for benchmarks)."""
    llm = settings.llm
    offline: AsyncLLMProvider = AsyncOfflineProvider()
    http: httpx.AsyncClient | None = None
    openai: AsyncLLMProvider | None = provider
    if openai is None and llm.provider == "openai" and llm.openai_api_key is not None:
        from agent_core.llm.openai import AsyncOpenAIProvider

        http = httpx.AsyncClient(timeout=httpx.Timeout(llm.llm_timeout_s, connect=5.0))
        openai = AsyncOpenAIProvider(
            api_key=llm.openai_api_key.get_secret_value(),
            base_url=llm.openai_base_url,
            http_client=http,
            timeout_s=llm.llm_timeout_s,
            max_retries=llm.llm_max_retries,
        )

    def llm_for(agent: Agent) -> tuple[AsyncLLMProvider, str]:
        if openai is None or (agent.llm.provider == "offline" and provider is None):
            return offline, "offline"
        return openai, agent.llm.model or llm.llm_model

    return VoiceRuntime(VoiceDeps(store=store, llm_for=llm_for), http=http)


def _twiml(xml: str) -> Response:
    return Response(xml, media_type=CONTENT_TYPE)


def _rt(request: Request | WebSocket) -> VoiceRuntime:
    return request.app.state.voice  # type: ignore[no-any-return]


def _url(request: Request | WebSocket, path: str, query: str = "") -> str:
    return webhook_url(request.app.state.settings.app.public_base_url, path, query)


def relay_url(public_base_url: str, call_id: str) -> str:
    """The socket URL we advertise (and Twilio signs): the public base with ws(s)://."""
    parts = urlsplit(webhook_url(public_base_url, f"/twilio/voice/{call_id}/relay"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _speech(agent: Agent) -> Speech:
    return Speech(agent.escalation.voice, agent.escalation.language)


def _goodbye(text: str, view: CallView | None = None) -> Response:
    return _twiml(say_and_hang_up(text, _speech(view.agent) if view else None))


async def _caller(request: Request) -> tuple[Any, CallView | None]:
    params = await request_form(request)
    try:
        turn = parse_caller_turn(params)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    view = await voice.load(request.app.state.store, request.path_params["call_id"])
    return turn, view


async def answer(request: Request) -> Response:
    """The call connected: greet the callee (knowing the chat) and listen, or hand the call
    to ConversationRelay."""
    turn, view = await _caller(request)
    if view is None:
        return _goodbye(voice.UNKNOWN_CALL)
    if view.call.status.terminal:
        return _goodbye(voice.ENDED_CALL, view)
    call_id = view.call.id
    hello = voice.greeting(view)
    relay = view.call.transport == "conversation_relay"
    bind = CallWrite(
        set_missing={"twilio_call_sid": turn.call_sid},
        map_sid=turn.call_sid if not view.call.twilio_call_sid else "",
        # ConversationRelay speaks the greeting itself; it is the transcript's first line either way.
        transcript=[voice.entry("agent", hello)] if not view.call.transcript else [],
    )
    await request.app.state.store.run(stored.write(call_id, bind))
    speech = _speech(view.agent)
    if relay:
        socket = relay_url(request.app.state.settings.app.public_base_url, call_id)
        ended = _url(request, f"/twilio/voice/{call_id}/relay-ended")
        return _twiml(connect_relay(socket_url=socket, action=ended, greeting=hello, speech=speech))
    return _twiml(say_and_listen(hello, action=_url(request, f"/twilio/voice/{call_id}/turn"), speech=speech))


@dataclass
class _Turn:
    """A gather turn running as a task; `late` once its webhook answered with a filler."""

    late: bool = False


def _say(request: Request, view: CallView, reply: VoiceReply) -> Response:
    if reply.end:
        return _twiml(say_and_hang_up(reply.text, _speech(view.agent)))
    action = _url(request, f"/twilio/voice/{view.call.id}/turn")
    return _twiml(say_and_listen(reply.text, action=action, speech=_speech(view.agent)))


async def turn(request: Request) -> Response:
    """The caller spoke (Gather's action), stayed silent, or a filler's Redirect came back."""
    caller, view = await _caller(request)
    if view is None:
        return _goodbye(voice.UNKNOWN_CALL)
    if view.call.status.terminal:
        return _goodbye(voice.ENDED_CALL, view)
    pending = request.query_params.get("pending")
    if pending:
        return await _collect(request, view, pending, int(request.query_params.get("n") or "1"))
    store: AsyncStore = request.app.state.store
    said = voice.clean_speech(caller.speech) or (voice.dtmf_text(caller.digits) if caller.digits else "")
    if not said:
        silences = await store.run(stored.count_silence(view.call.id, True))
        if silences >= voice.SILENCES_BEFORE_GOODBYE:
            await voice.record(store, view.call.id, voice.entry("agent", voice.SILENCE_GOODBYE))
            return _goodbye(voice.SILENCE_GOODBYE, view)
        return _say(request, view, VoiceReply(voice.SILENCE_PROMPT))
    said_entry = voice.entry("customer", said)
    # The caller spoke: the silences in a row start again from zero, in the same write.
    await store.run(stored.write(view.call.id, CallWrite(set={"silences": 0}, transcript=[said_entry])))
    view.call = view.call.model_copy(
        update={"transcript": [*view.call.transcript, escalation.TranscriptEntry.model_validate(said_entry)]}
    )
    rt = _rt(request)
    number = uuid.uuid4().hex[:12]
    state = _Turn()
    task = asyncio.create_task(_gather_turn(rt.deps, view, said, str(number), state))
    rt.running.add(task)
    task.add_done_callback(rt.running.discard)
    try:
        reply = await asyncio.wait_for(asyncio.shield(task), rt.deps.budget_s)
    except TimeoutError:
        if not task.done():
            # No await between this check and the flag: the task sees it when it finishes.
            state.late = True
            log.info("voice turn past its budget; filler and redirect", call_id=view.call.id)
            url = _url(request, f"/twilio/voice/{view.call.id}/turn", f"pending={number}&n=1")
            return _twiml(say_and_redirect(voice.FILLER, url=url, speech=_speech(view.agent)))
        reply = task.result()
    except Exception:
        # The caller must hear something: a 5xx is a dead line (Twilio plays its error message).
        log.exception("voice turn failed", call_id=view.call.id)
        reply = VoiceReply(voice.APOLOGY)
    return _say(request, view, reply)


async def _gather_turn(deps: VoiceDeps, view: CallView, said: str, number: str, state: _Turn) -> VoiceReply:
    reply = await voice.converse(deps, view, said)
    await voice.record(deps.store, view.call.id, voice.entry("agent", reply.text))
    if state.late:
        await deps.store.run(stored.put_reply(view.call.id, number, {"text": reply.text, "end": reply.end}))
    return reply


async def _collect(request: Request, view: CallView, number: str, attempt: int) -> Response:
    """A filler's Redirect: the late reply if it arrives within the budget, else another filler."""
    store: AsyncStore = request.app.state.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _rt(request).deps.budget_s
    while True:
        found = await store.run(stored.take_reply(view.call.id, number))
        if found is not None:
            return _say(request, view, VoiceReply(str(found.get("text") or ""), end=bool(found.get("end"))))
        if loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    if attempt < MAX_REDIRECTS:
        url = _url(request, f"/twilio/voice/{view.call.id}/turn", f"pending={number}&n={attempt + 1}")
        return _twiml(say_and_redirect("Still working on it, one more moment.", url=url, speech=_speech(view.agent)))
    return _say(request, view, VoiceReply(voice.APOLOGY))


async def relay_ended(request: Request) -> Response:
    """ConversationRelay's session ended (`end` frame or hang-up): end the call."""
    await request_form(request)
    return _twiml(say_and_hang_up(""))


async def status(request: Request) -> Response:
    params = await request_form(request)
    try:
        update = parse_call_status(params)
    except InvalidTwilioRequest as exc:
        raise BadRequest(str(exc)) from exc
    outcome = await request.app.state.store.run(escalation.apply_status(update))
    log.info("call status", call_sid=update.call_sid, status=update.status.value, outcome=outcome)
    return Response(EMPTY_RESPONSE, media_type=CONTENT_TYPE)


@dataclass
class _Speaking:
    """The reply being streamed on the socket: what was sent, and whether it is recorded."""

    task: asyncio.Task[None] | None = None
    sent: list[str] = field(default_factory=list)
    recorded: bool = False


class RelaySession:
    """One ConversationRelay socket bound to one call."""

    def __init__(self, ws: WebSocket, deps: VoiceDeps, view: CallView) -> None:
        self.ws = ws
        self.deps = deps
        self.view = view
        self.speaking = _Speaking(recorded=True)
        self.ended = False

    async def run(self) -> None:
        try:
            while not self.ended:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") or message.get("bytes") or ""
                try:
                    frame = frames.parse_frame(raw)
                except InvalidTwilioRequest as exc:
                    log.warning("bad ConversationRelay message", call_id=self.view.call.id, error=str(exc))
                    continue
                await self.handle(frame)
        except WebSocketDisconnect:
            pass
        finally:
            await self.stop(heard=None)

    async def handle(self, frame: frames.RelayFrame) -> None:
        if isinstance(frame, frames.RelaySetup):
            if frame.call_sid:
                bind = CallWrite(set_missing={"twilio_call_sid": frame.call_sid})
                await self.deps.store.run(stored.write(self.view.call.id, bind))
        elif isinstance(frame, frames.RelayPrompt):
            if frame.final and frame.text.strip():
                await self.prompt(voice.clean_speech(frame.text))
        elif isinstance(frame, frames.RelayDigit):
            if frame.digit:
                await self.prompt(voice.dtmf_text(frame.digit))
        elif isinstance(frame, frames.RelayInterrupt):
            await self.stop(heard=frame.heard)
        elif isinstance(frame, frames.RelayError):
            log.warning("ConversationRelay error", call_id=self.view.call.id, description=frame.description)

    async def prompt(self, said: str) -> None:
        # A new utterance while we still speak: the caller talked over us.
        await self.stop(heard=None)
        said_entry = voice.entry("customer", said)
        await voice.record(self.deps.store, self.view.call.id, said_entry)
        self._remember(said_entry)
        speaking = _Speaking()
        self.speaking = speaking
        speaking.task = asyncio.create_task(self._reply(speaking, said))

    def _remember(self, item: dict[str, Any]) -> None:
        entry = escalation.TranscriptEntry.model_validate(item)
        self.view.call = self.view.call.model_copy(update={"transcript": [*self.view.call.transcript, entry]})

    async def _reply(self, speaking: _Speaking, said: str) -> None:
        async def on_token(token: str) -> None:
            speaking.sent.append(token)
            await self.ws.send_text(frames.text_frame(token, False))

        reply = await voice.converse(self.deps, self.view, said, on_token)
        await self.ws.send_text(frames.text_frame("", True))
        said_entry = voice.entry("agent", reply.text)
        speaking.recorded = True
        await voice.record(self.deps.store, self.view.call.id, said_entry)
        self._remember(said_entry)
        if reply.end:
            self.ended = True
            await self.ws.send_text(frames.end_frame(voice.handoff(self.view, "the agent ended the call")))

    async def stop(self, heard: str | None) -> None:
        """Stop the reply being spoken. `heard` (an interrupt) is what the caller heard of
        it; None when the socket dropped or a new prompt came: what was sent is kept."""
        speaking = self.speaking
        task = speaking.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        elif task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("relay turn failed", call_id=self.view.call.id, error=repr(task.exception()))
        store, call_id = self.deps.store, self.view.call.id
        if not speaking.recorded:
            speaking.recorded = True
            text = heard if heard is not None else "".join(speaking.sent)
            await voice.record(store, call_id, voice.entry("agent", text.strip(), interrupted=True))
        elif heard is not None and task is not None:
            # The whole reply was sent, but playback was cut: keep only what was heard.
            await store.run(stored.truncate_last(call_id, voice.entry("agent", heard.strip(), interrupted=True)))
        speaking.task = None


async def relay_socket(ws: WebSocket) -> None:
    settings = ws.app.state.settings
    call_id = ws.path_params["call_id"]
    if settings.twilio.validate_signatures:
        url = relay_url(settings.app.public_base_url, call_id)
        if ws.url.query:
            url += "?" + ws.url.query
        if not verify(ws.app.state.twilio_auth_token, url, {}, ws.headers.get(SIGNATURE_HEADER)):
            log.warning("ConversationRelay handshake signature check failed", call_id=call_id)
            # Closing before accepting refuses the upgrade: the server answers HTTP 403.
            await ws.close(code=1008)
            return
    view = await voice.load(ws.app.state.store, call_id)
    if view is None or view.call.status.terminal:
        await ws.close(code=1008)
        return
    await ws.accept()
    await RelaySession(ws, _rt(ws).deps, view).run()


FORM = {"type": "string"}

ENDPOINTS = [
    # Before /twilio/voice/{call_id}, which would also match it.
    Endpoint(
        "POST",
        "/twilio/voice/status",
        status,
        "Twilio call status callback (escalation calls)",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response=FORM,
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
    ),
    Endpoint(
        "POST",
        "/twilio/voice/{call_id}",
        answer,
        "Twilio voice webhook of an escalation call: greeting and Gather, or ConversationRelay",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response=FORM,
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
    ),
    Endpoint(
        "POST",
        "/twilio/voice/{call_id}/turn",
        turn,
        "Gather action of an escalation call: the caller's speech in, the agent's answer out",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response=FORM,
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
    ),
    Endpoint(
        "POST",
        "/twilio/voice/{call_id}/relay-ended",
        relay_ended,
        "ConversationRelay <Connect action>: the relay session ended",
        None,
        "twilio",
        envelope=False,
        content_type="text/xml",
        response=FORM,
        errors=(400, 403, 413),
        headers=("X-Twilio-Signature",),
    ),
]

WEBSOCKETS = [WebSocketRoute("/twilio/voice/{call_id}/relay", relay_socket)]
