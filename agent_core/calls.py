"""Escalation to a phone call (SPEC §8): request, place, follow, finish.

- `request_call` is the one way a call starts (the agent's `request_call` tool, the API,
  the console, the widget): it checks what §8 refuses and does the atomic check-and-set
  (lua/call_request.lua) that keeps one live call per session, queueing the place job.
- `place` (worker) summarises the chat for the voice agent, asks the provider to call (or
  the external voice agent to), and tells the customer in the chat that a call is coming.
- `apply_status` (status callbacks) moves the call forward only, once per (CallSid, status);
  an ended call queues `finish`, which writes its outcome into the chat exactly once: the
  summary as a context entry, a chat message through the normal delivery path, customer
  memory and the `call.completed` event — or, if it did not connect, a message saying so.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agent_core.events import signature
from agent_core.lifecycle import transcript
from agent_core.llm.base import LLMError, LLMProvider, LLMRequest, ToolSpec
from agent_core.models import (
    E164,
    Agent,
    CallStatus,
    Channel,
    Role,
    Session,
    SessionStatus,
    new_id,
    now_iso,
    outbound_fields,
)
from agent_core.store import Op, Store, Work, agents, messages, sessions, tasks
from agent_core.store import calls as stored
from agent_core.store.calls import CallWrite, StoredCall
from agent_core.support import CommandError
from agent_core.tools import BuiltinTool, ToolContext
from channels.models import (
    CallPlacer,
    CallStatusUpdate,
    OutboundCall,
    PermanentDeliveryError,
    RetryableDeliveryError,
)

log = logging.getLogger("agent_core.calls")

LIVE = frozenset({CallStatus.queued, CallStatus.ringing, CallStatus.in_progress})
CONTEXT_KEEP = 5
EXTERNAL = "external"
ESCALATION_PROMPT = (
    "A voice agent is about to phone this customer. Summarize the chat for it in two or three "
    "sentences: who the customer is, what they want, what was already said or tried, and why "
    "they asked for a call. Write plain text."
)
CALL_SUMMARY_PROMPT = (
    "Summarize this phone call between our voice agent and the customer in two or three "
    "sentences: what the customer wanted, what was agreed or answered, and anything still "
    "open. Write plain text addressed to nobody in particular."
)
NOT_CONNECTED = {
    CallStatus.busy: "the line was busy",
    CallStatus.no_answer: "nobody answered",
    CallStatus.canceled: "the call was canceled",
    CallStatus.failed: "the call could not be placed",
}


class CallError(CommandError):
    """A call cannot be requested: `status` 422 (or 404), the message names the field."""


class TranscriptEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: str
    text: str
    at: str
    interrupted: bool = False


class Call(BaseModel):
    """An escalation call (SPEC §3)."""

    model_config = ConfigDict(frozen=True)

    id: str
    session_id: str
    agent_id: str
    twilio_call_sid: str | None = None
    status: CallStatus
    to: str
    from_number: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    transport: str = "gather"
    chat_summary: str | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    summary: str | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: int | None = None
    placed: bool | None = Field(default=None, description="False: recorded in the dev outbox, not placed")
    error_code: int | None = None
    error_message: str | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def api_json(self) -> dict[str, Any]:
        """The Call with OSVI's read-back names (`call_id`, `duration_seconds`, `phone_number`)."""
        out = self.model_dump(mode="json")
        out.update(call_id=self.id, duration_seconds=self.duration_s, phone_number=self.to)
        return out


def parse_call(call: StoredCall) -> Call:
    f = call.fields

    def opt(name: str) -> str | None:
        return f.get(name) or None

    def integer(name: str) -> int | None:
        value = f.get(name) or ""
        return int(value) if value.lstrip("-").isdigit() else None

    placed = f.get("placed")
    return Call(
        id=f["id"],
        session_id=f.get("session_id", ""),
        agent_id=f.get("agent_id", ""),
        twilio_call_sid=opt("twilio_call_sid"),
        status=CallStatus(f.get("status") or "queued"),
        to=f.get("to", ""),
        from_number=opt("from"),
        reason=opt("reason"),
        requested_by=opt("requested_by"),
        transport=f.get("transport") or "gather",
        chat_summary=opt("chat_summary"),
        transcript=[TranscriptEntry.model_validate(t) for t in call.transcript],
        summary=opt("summary"),
        created_at=f.get("created_at") or "",
        started_at=opt("started_at"),
        ended_at=opt("ended_at"),
        duration_s=integer("duration_s"),
        placed=None if placed in (None, "") else placed == "1",
        error_code=integer("error_code"),
        error_message=opt("error_message"),
    )


def get_call(call_id: str) -> Op[Call | None]:
    found = yield from stored.get(call_id)
    return parse_call(found) if found else None


def calls_of_session(session_id: str, limit: int = 50) -> Op[list[Call]]:
    """The session's calls, newest first (the session object's `calls`)."""
    found, _ = yield from stored.page(session_id=session_id, agent_id=None, status=None, limit=limit, before=None)
    return [parse_call(c) for c in found]


def _number(session: Session, to: str | None, field: str) -> str:
    """The number to call: the `to` given, else an SMS/WhatsApp session's own number."""
    if to is not None and to.strip():
        number = to.strip().removeprefix("whatsapp:")
        if not E164.match(number):
            raise CallError(f"{field}: '{to}' is not an E.164 phone number (like +15551234567)")
        return number
    if session.channel in (Channel.sms, Channel.whatsapp) and E164.match(session.customer_id):
        return session.customer_id
    raise CallError(f"{field}: a phone number (E.164, like +15551234567) is needed to call this customer")


def _opted_out(session: Session) -> bool:
    """A customer who opted out on any channel is never called (§8)."""
    return session.opted_out or any(use.opted_out for use in session.channel_use.values())


def call_availability(session: Session, agent: Agent | None) -> str | None:
    """Why a call cannot be requested now, for a console to show instead of its button (None:
    it may); the same rules `request_call` applies, which still decides (atomically)."""
    if agent is None or not agent.escalation.enabled:
        return "phone calls are disabled for this agent"
    if session.status is SessionStatus.closed:
        return "the session is closed"
    if _opted_out(session):
        return "the customer opted out (STOP)"
    if session.live_call:
        return "a call is in progress"
    return None


def request_call(*, session_id: str, agent: Agent, reason: str | None, to: str | None, by: str) -> Op[Call]:
    """Start an escalation call for the session, or raise CallError saying why not (§8):
    escalation disabled, the customer opted out, no valid number, the session closed, or a
    call already live (checked and set atomically with the call's creation). `by` is who
    asked: "agent" (the tool), "widget", or an operator's identity."""
    # The tool's and the widget's argument is `phone_number`; the API's body field is `to`.
    field = "phone_number" if by in ("agent", "widget") else "to"
    esc = agent.escalation
    if not esc.enabled:
        raise CallError(f"escalation: phone calls are disabled for agent '{agent.id}'")
    session = yield from sessions.get(session_id)
    if session is None:
        raise CallError(f"session_id: no session with id '{session_id}'", status=404)
    if session.agent_id != agent.id:
        raise CallError(f"session_id: session '{session_id}' belongs to another agent")
    if session.status is SessionStatus.closed:
        raise CallError(f"session_id: session '{session_id}' is closed")
    if _opted_out(session):
        raise CallError("session_id: the customer opted out (STOP); they are not called")
    number = _number(session, to, field)
    if esc.webhook_url and agent.webhook is None:
        raise CallError("escalation.webhook_url: the agent needs a webhook (its secret signs call.requested)")
    call_id = new_id("call")
    at = now_iso()
    transport = EXTERNAL if esc.webhook_url else esc.voice_transport
    fields = {
        "id": call_id,
        "status": CallStatus.queued.value,
        "to": number,
        "from": esc.from_number or "",
        "reason": (reason or "").strip()[:500],
        "requested_by": by[:200],
        "transport": transport,
        "customer_id": session.customer_id,
        "created_at": at,
    }
    result = yield from stored.request(session_id, call_id, fields, [Work.place_call(call_id)])
    if result.status == "missing":
        raise CallError(f"session_id: no session with id '{session_id}'", status=404)
    if result.status == "closed":
        raise CallError(f"session_id: session '{session_id}' is closed")
    if result.status == "opted_out":
        raise CallError("session_id: the customer opted out (STOP); they are not called")
    if result.status == "live":
        raise CallError(f"session_id: a call is already live for this session ({result.live_call})")
    return Call(
        id=call_id,
        session_id=session_id,
        agent_id=agent.id,
        status=CallStatus.queued,
        to=number,
        from_number=esc.from_number,
        reason=fields["reason"] or None,
        requested_by=by,
        transport=transport,
        created_at=at,
    )


def request_call_tool(store: Store) -> BuiltinTool:
    """The built-in `request_call` tool, bound to the worker's store: it requests the call
    during the turn (the check-and-set must see other triggers), and answers the model with
    the outcome or the reason it was refused."""

    def offer(agent: Agent, session: Session) -> ToolSpec | None:
        if not agent.escalation.enabled:
            return None
        properties: dict[str, Any] = {
            "reason": {"type": "string", "description": "What the call is about"},
            "when": {"type": "string", "description": "When the customer wants the call, if they said (e.g. 'now')"},
        }
        needs_number = session.channel not in (Channel.sms, Channel.whatsapp)
        properties["phone_number"] = {
            "type": "string",
            "description": "The customer's phone number in E.164 (+15551234567)"
            + (" — ask for it first" if needs_number else "; only if they want another number"),
        }
        return ToolSpec(
            "request_call",
            "Phone the customer: a voice agent calls them now with a summary of this chat. Offer it when a "
            "call would help, and call this tool ONLY after the customer has agreed to be called.",
            {"type": "object", "properties": properties, "required": ["reason"], "additionalProperties": False},
        )

    def run(ctx: ToolContext, args: dict[str, Any]) -> str:
        reason = str(args.get("reason") or "customer agreed to a phone call")
        when = str(args.get("when") or "").strip()
        if when:
            reason = f"{reason} (when: {when[:100]})"
        number = args.get("phone_number")
        try:
            call = store.run(
                request_call(
                    session_id=ctx.session.id,
                    agent=ctx.agent,
                    reason=reason,
                    to=str(number) if number else None,
                    by="agent",
                )
            )
        except CallError as exc:
            return f"error: the call was not requested: {exc}"
        return (
            f"A call to {call.to} is being placed now (call id {call.id}). Tell the customer briefly that "
            "they will get a phone call in a moment."
        )

    return BuiltinTool("request_call", offer, run)


# ---- placing (worker) ------------------------------------------------------------------


@dataclass
class Placement:
    """What `place` needs besides the store: the LLM for the chat summary, the call placer,
    our public URLs, and an HTTP client for an external voice agent."""

    provider_for: Callable[[Agent], tuple[LLMProvider, str]]
    placer: CallPlacer
    public_url: Callable[[str], str]
    http: httpx.Client
    retry_later: Callable[[str, int, float], None]
    backoff_s: tuple[float, ...] = (2, 5, 15, 60)


def _summarize(provider_for: Callable[[Agent], tuple[LLMProvider, str]], agent: Agent, prompt: str, text: str) -> str:
    provider, model = provider_for(agent)
    request = LLMRequest(
        model=model,
        messages=[{"role": "system", "content": prompt}, {"role": "user", "content": text}],
        temperature=0.2,
        max_tokens=300,
        purpose="summary",
    )
    return (provider.complete(request).text or "").strip()


def chat_summary(store: Store, p: Placement, agent: Agent, session: Session, reason: str | None) -> str:
    """What the voice agent is told about the chat (the LLM's summary; the reason if it fails)."""
    thread = store.run(messages.recent(session.id, session.seq, 200))
    text = transcript(thread)
    fallback = f"The customer asked for a call{': ' + reason if reason else ''}."
    if not text:
        return fallback
    try:
        return _summarize(p.provider_for, agent, ESCALATION_PROMPT, text) or fallback
    except LLMError as exc:
        log.warning("chat summary for a call failed, calling with the reason only: %s", exc)
        return fallback


def _chat_message(session: Session, text: str, call_id: str) -> tuple[dict[str, Any], list[Work]]:
    at = now_iso()
    msg = sessions.new_message(
        Role.agent, text, created_at=at, **outbound_fields(session, at), meta={"call_id": call_id}
    )
    return msg, [Work.deliver(session.id, msg["id"])] if session.channel.delivered else []


def _fail(store: Store, call_id: str, code: int | None, message: str) -> None:
    store.run(
        stored.write(
            call_id,
            CallWrite(
                set={
                    "status": CallStatus.failed.value,
                    "error_code": code if code is not None else "",
                    "error_message": message[:500],
                    "ended_at": now_iso(),
                },
                rank=CallStatus.failed.rank,
                clear_live=True,
                work=[Work.finish_call(call_id)],
            ),
        )
    )


def place(store: Store, p: Placement, call_id: str, attempt: int = 0) -> str:
    """The escalation job: place the call once (a retry never places a second one)."""
    work = Work.place_call(call_id)
    call = store.run(get_call(call_id))
    if call is None or call.status is not CallStatus.queued:
        store.run(tasks.done(work))
        return "gone" if call is None else "not queued"
    session = store.run(sessions.get(call.session_id))
    agent = store.run(agents.get(call.agent_id))
    if session is None or agent is None:
        _fail(store, call_id, None, "the session or its agent no longer exists")
        store.run(tasks.done(work))
        return "failed"
    summary = call.chat_summary or chat_summary(store, p, agent, session, call.reason)
    # The flag is set once: a job run again after a crash past it (Twilio may have placed
    # the call) fails the call instead of placing a second one.
    claimed = store.run(stored.write(call_id, CallWrite(set={"chat_summary": summary}, once="placing")))
    if claimed.outcome == "flagged":
        if not store.run(stored.field_of(call_id, "twilio_call_sid")):
            _fail(store, call_id, None, "interrupted while placing; not retried so that no second call is placed")
        store.run(tasks.done(work))
        return "interrupted"
    if claimed.outcome != "ok":
        store.run(tasks.done(work))
        return claimed.outcome
    if call.transport == EXTERNAL:
        outcome = _hand_to_external(store, p, agent, call, summary, attempt)
    else:
        outcome = _place_with_provider(store, p, agent, session, call, attempt)
    if outcome != "retrying":
        store.run(tasks.done(work))
    return outcome


def _place_with_provider(store: Store, p: Placement, agent: Agent, session: Session, call: Call, attempt: int) -> str:
    request = OutboundCall(
        to=call.to,
        from_number=call.from_number or agent.escalation.from_number or "",
        url=p.public_url(f"/twilio/voice/{call.id}"),
        status_callback=p.public_url("/twilio/voice/status"),
        time_limit_s=agent.escalation.max_call_s,
    )
    try:
        receipt = p.placer.place(request)
    except RetryableDeliveryError as exc:
        if attempt < len(p.backoff_s):
            # No call was created: release the flag so the retry may place it.
            store.run(stored.write(call.id, CallWrite(set={"placing": "0"})))
            delay = exc.retry_after if exc.retry_after is not None else p.backoff_s[attempt]
            p.retry_later(call.id, attempt + 1, delay)
            return "retrying"
        _fail(store, call.id, exc.code, exc.message)
        return "failed"
    except PermanentDeliveryError as exc:
        _fail(store, call.id, exc.code, exc.message)
        return "failed"
    note = f"I'm calling you now at {call.to} — please pick up. We'll continue here after the call."
    msg, deliver = _chat_message(session, note, call.id)
    status = receipt.status if receipt.status in LIVE else CallStatus.queued
    store.run(
        stored.write(
            call.id,
            CallWrite(
                set={"twilio_call_sid": receipt.call_sid, "placed": receipt.placed, "status": status.value},
                map_sid=receipt.call_sid,
                messages=[msg],
                event=("call.started", _event_data(call, status, receipt.call_sid)),
                work=deliver,
            ),
        )
    )
    return "placed" if receipt.placed else "dev outbox"


def _event_data(call: Call, status: CallStatus, sid: str | None) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "session_id": call.session_id,
        "status": status.value,
        "to": call.to,
        "twilio_call_sid": sid,
    }


def _hand_to_external(store: Store, p: Placement, agent: Agent, call: Call, summary: str, attempt: int) -> str:
    hook = agent.webhook
    url = agent.escalation.webhook_url
    assert url is not None
    body = json.dumps(
        {
            "event": "call.requested",
            "call_id": call.id,
            "session_id": call.session_id,
            "to": call.to,
            "summary": summary,
            "reason": call.reason,
            "result_url": p.public_url(f"/v1/calls/{call.id}/result"),
        },
        ensure_ascii=False,
    ).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "chat-agent-gateway", "X-Event-Type": "call.requested"}
    if hook is not None:
        headers["X-Signature"] = signature(hook.secret, body, int(time.time()))
    try:
        response = p.http.post(url, content=body, headers=headers, timeout=10.0)
        ok, retryable, why = 200 <= response.status_code < 300, response.status_code >= 500, str(response.status_code)
    except httpx.HTTPError as exc:
        ok, retryable, why = False, True, type(exc).__name__
    if not ok:
        if retryable and attempt < len(p.backoff_s):
            store.run(stored.write(call.id, CallWrite(set={"placing": "0"})))
            p.retry_later(call.id, attempt + 1, p.backoff_s[attempt])
            return "retrying"
        _fail(store, call.id, None, f"the external voice agent refused the call ({why})")
        return "failed"
    store.run(
        stored.write(
            call.id,
            CallWrite(set={"placed": True}, event=("call.started", _event_data(call, CallStatus.queued, None))),
        )
    )
    return "handed over"


# ---- following and finishing -----------------------------------------------------------


def apply_status(update: CallStatusUpdate) -> Op[str]:
    """A status callback: `unknown` call, `dup` (seen), `stale` (behind), or `applied`."""
    call_id = yield from stored.by_call_sid(update.call_sid)
    if not call_id:
        return "unknown"
    return (yield from advance(call_id, update.status, duration_s=update.duration_s, dedupe=update.call_sid))


def advance(
    call_id: str,
    status: CallStatus,
    *,
    duration_s: int | None = None,
    dedupe: str = "",
    summary: str | None = None,
    transcript: list[dict[str, Any]] | None = None,
) -> Op[str]:
    """Move a call to `status` (never backwards); an ended call queues its finish job."""
    at = now_iso()
    fields: dict[str, Any] = {"status": status.value}
    first: dict[str, Any] = {}
    if status is CallStatus.in_progress:
        first["started_at"] = at
    if status.terminal:
        fields["ended_at"] = at
        if duration_s is not None:
            fields["duration_s"] = duration_s
        if summary:
            fields["summary"] = summary[:5000]
    written = yield from stored.write(
        call_id,
        CallWrite(
            set=fields,
            set_missing=first,
            transcript=transcript or (),
            rank=status.rank,
            dedupe=(dedupe, status.value) if dedupe else None,
            clear_live=status.terminal,
            work=[Work.finish_call(call_id)] if status.terminal else (),
        ),
    )
    return "applied" if written.outcome == "ok" else written.outcome


def finish(store: Store, provider_for: Callable[[Agent], tuple[LLMProvider, str]], call_id: str) -> str:
    """Write an ended call's outcome into its chat, once (the job may run again)."""
    work = Work.finish_call(call_id)
    call = store.run(get_call(call_id))
    if call is None:
        store.run(tasks.done(work))
        return "gone"
    session = store.run(sessions.get(call.session_id))
    agent = store.run(agents.get(call.agent_id))
    if session is None or agent is None:
        store.run(tasks.done(work))
        return "gone"
    change = _outcome(call, session, agent, provider_for)
    written = store.run(stored.write(call_id, change))
    store.run(tasks.done(work))
    return "finished" if written.outcome == "ok" else written.outcome


def _outcome(
    call: Call, session: Session, agent: Agent, provider_for: Callable[[Agent], tuple[LLMProvider, str]]
) -> CallWrite:
    at = now_iso()
    data = {**_event_data(call, call.status, call.twilio_call_sid), "duration_s": call.duration_s}
    if call.status is CallStatus.completed:
        summary = call.summary or _call_summary(call, agent, provider_for)
        msg, deliver = _chat_message(session, f"Thanks for the call — here is what we agreed: {summary}", call.id)
        memory_entry = {
            "session_id": session.id,
            "call_id": call.id,
            "summary": summary,
            "created_at": at,
            "kind": "call",
        }
        return CallWrite(
            set={"summary": summary},
            once="finished",
            messages=[msg, _context_note(summary, at)],
            context=f"Phone call summary: {summary}",
            context_keep=CONTEXT_KEEP,
            memory=(agent.id, session.customer_id, memory_entry) if agent.memory.enabled else None,
            event=("call.completed", {**data, "summary": summary}),
            work=deliver,
        )
    why = NOT_CONNECTED.get(call.status, "the call did not connect")
    if call.error_message:
        why += f" ({call.error_message})"
    text = (
        f"We couldn't reach you by phone: {why}. We're happy to continue here in the chat — "
        "or just ask and we'll try calling again."
    )
    msg, deliver = _chat_message(session, text, call.id)
    return CallWrite(once="finished", messages=[msg], event=("call.completed", data), work=deliver)


def _context_note(summary: str, at: str) -> dict[str, Any]:
    return sessions.new_message(Role.context, f"Phone call summary: {summary}", created_at=at, private=True)


def _call_summary(call: Call, agent: Agent, provider_for: Callable[[Agent], tuple[LLMProvider, str]]) -> str:
    said = [t for t in call.transcript if t.text.strip()]
    if not any(t.role == "customer" for t in said):
        return "The call connected, but the customer did not say anything."
    text = "\n".join(f"{'customer' if t.role == 'customer' else 'agent'}: {t.text}" for t in said)
    try:
        return _summarize(provider_for, agent, CALL_SUMMARY_PROMPT, text) or "No summary available."
    except LLMError as exc:
        # RQ retries the job with backoff; the task entry stays until it succeeds.
        raise RuntimeError(f"summary of call {call.id} failed: {exc}") from exc


def report_result(
    *, call_id: str, status: CallStatus, summary: str | None, transcript: list[dict[str, Any]] | None
) -> Op[Call]:
    """An external voice agent's result (`POST /v1/calls/{id}/result`): finishes the call as
    a status callback would, with its summary and transcript."""
    call = yield from get_call(call_id)
    if call is None:
        raise CallError(f"call_id: no call with id '{call_id}'", status=404)
    if not status.terminal:
        raise CallError(f"status: '{status.value}' is not a final call status")
    if not call.live:
        raise CallError(f"call_id: call '{call_id}' has already ended ({call.status.value})")
    at = now_iso()
    entries = [
        {"role": t.get("role", "customer"), "text": str(t.get("text", "")), "at": t.get("at") or at}
        for t in transcript or []
    ]
    outcome = yield from advance(call_id, status, summary=summary, transcript=entries)
    if outcome != "applied":
        raise CallError(f"call_id: call '{call_id}' has already ended")
    after = yield from get_call(call_id)
    assert after is not None
    return after
