"""The built-in voice agent (SPEC §8): the same agent as the chat — its prompt, knowledge,
memory, whispers and tools — speaking in the voice style, on the async streaming LLM seam
(the web process answers voice webhooks and the relay socket on its event loop).

`converse` runs one voice turn and hands each text delta to `on_token` as the model
produces it (ConversationRelay speaks it at once; a gather turn collects it). The caller
records the transcript: the customer's words before the turn, the agent's after it (for
ConversationRelay, only what the caller heard).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent_core.calls import Call, TranscriptEntry, get_call
from agent_core.knowledge.retrieval import load_corpus
from agent_core.llm.base import AsyncLLMProvider, LLMError, LLMRequest, LLMResponse, Passage, ToolSpec
from agent_core.models import Agent, Session, now_iso
from agent_core.prompts import PromptInputs, build_messages
from agent_core.store import AsyncStore, Change, agents, calls, memory, messages, sessions
from agent_core.tools import BUILTINS, Actions, ToolArgumentError, ToolContext, parse_arguments

log = logging.getLogger("agent_core.voice")

THREAD_WINDOW = 40
MAX_TOOL_ROUNDS = 3
# Twilio waits 15 s for a webhook; the model gets this much of it, then a filler plays.
LLM_BUDGET_S = 8.0
SILENCES_BEFORE_GOODBYE = 2
FILLER = "One moment, please."
GOODBYE = "Thanks for your time. I'll follow up in the chat. Goodbye!"
SILENCE_PROMPT = "Sorry, I didn't catch that. Are you still there?"
SILENCE_GOODBYE = "I can't hear you, so I'll end the call now and follow up in the chat. Goodbye!"
APOLOGY = "Sorry, I'm having trouble answering right now. We'll follow up with you in the chat."
UNKNOWN_CALL = "Sorry, this call is no longer available. Goodbye."
ENDED_CALL = "This call has ended. We'll follow up in the chat. Goodbye."

Provider = Callable[[Agent], tuple[AsyncLLMProvider, str]]
OnToken = Callable[[str], Awaitable[None]]


@dataclass
class VoiceDeps:
    store: AsyncStore
    llm_for: Provider
    budget_s: float = LLM_BUDGET_S


@dataclass
class CallView:
    """A live call with its session and agent, as a voice turn reads them."""

    call: Call
    session: Session
    agent: Agent


@dataclass
class VoiceReply:
    text: str
    end: bool = False
    help_reason: str | None = None
    error: str | None = None
    records: list[str] = field(default_factory=list)


async def load(store: AsyncStore, call_id: str) -> CallView | None:
    call = await store.run(get_call(call_id))
    if call is None:
        return None
    session = await store.run(sessions.get(call.session_id))
    agent = await store.run(agents.get_cached(call.agent_id))
    if session is None or agent is None:
        return None
    return CallView(call, session, agent)


def _first_sentences(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > 40 else cut.rsplit(" ", 1)[0] + "…"


def greeting(view: CallView) -> str:
    """The first words: who is calling and that we know what the chat was about."""
    known = view.call.chat_summary or view.call.reason or ""
    about = f" From our chat I understand: {_first_sentences(known)}" if known else ""
    return f"Hi, this is {view.agent.name}, calling about your chat with us.{about} How can I help?"


def end_call_tool() -> ToolSpec:
    return ToolSpec(
        "end_call",
        "Hang up the phone call once the customer's questions are answered and you have said goodbye, "
        "or when they ask to end the call.",
        {"type": "object", "properties": {"reason": {"type": "string"}}, "required": [], "additionalProperties": False},
    )


def _call_context(call: Call) -> str:
    lines = ["You phoned this customer because they agreed to a call during the chat above."]
    if call.chat_summary:
        lines.append(f"Summary of the chat so far: {call.chat_summary}")
    if call.reason:
        lines.append(f"Why they wanted a call: {call.reason}")
    lines.append("When everything is settled and you have said goodbye, use the end_call tool.")
    return "\n".join(lines)


def _said(entry: TranscriptEntry) -> dict[str, Any]:
    return {"role": "user" if entry.role == "customer" else "assistant", "content": entry.text or "(silence)"}


async def _passages(store: AsyncStore, agent: Agent, question: str) -> list[Passage]:
    cfg = agent.knowledge
    if not cfg.document_ids or not question.strip():
        return []
    corpus = await store.run(load_corpus(cfg.document_ids))
    return corpus.search(question, cfg.top_k, cfg.relevance_threshold)


async def prompt_for(deps: VoiceDeps, view: CallView, question: str) -> tuple[list[dict[str, Any]], list[Passage]]:
    """The voice turn's messages: the chat's prompt (SPEC §9, voice style, whispers included),
    the call's own context, then the call so far."""
    store, session, agent = deps.store, view.session, view.agent
    thread, guidance = await store.run(messages.thread_and_whispers(session.id, session.seq, THREAD_WINDOW))
    remembered: list[str] = []
    if agent.memory.enabled:
        items = await store.run(memory.recall(agent.id, session.customer_id, agent.memory.max_items))
        remembered = [i["summary"] for i in reversed(items) if i.get("session_id") != session.id]
    passages = await _passages(store, agent, question)
    extra = [agent.escalation.voice_prompt, _call_context(view.call)]
    inputs = PromptInputs(
        agent=agent,
        session=session,
        thread=thread,
        memory=remembered,
        passages=passages,
        whispers=guidance,
        purpose="voice",
        extra_system=extra,
    )
    chat = build_messages(inputs)
    chat.extend(_said(t) for t in view.call.transcript)
    return chat, passages


def _tools(view: CallView) -> list[ToolSpec]:
    human = BUILTINS["request_human"].offer(view.agent, view.session)
    return [t for t in (human, end_call_tool()) if t is not None]


async def _stream(provider: AsyncLLMProvider, request: LLMRequest, on_token: OnToken | None) -> LLMResponse:
    response: LLMResponse | None = None
    async with provider.stream(request) as chunks:
        async for chunk in chunks:
            if chunk.text and on_token is not None:
                await on_token(chunk.text)
            if chunk.response is not None:
                response = chunk.response
    if response is None:
        raise LLMError("the stream ended without a response")
    return response


async def converse(deps: VoiceDeps, view: CallView, question: str, on_token: OnToken | None = None) -> VoiceReply:
    """One voice turn answering `question` (already in the call's transcript)."""
    provider, model = deps.llm_for(view.agent)
    chat, passages = await prompt_for(deps, view, question)
    tools = _tools(view)
    actions = Actions()
    ctx = ToolContext(agent=view.agent, session=view.session, actions=actions)
    end = False
    spoken: list[str] = []

    async def speak(token: str) -> None:
        spoken.append(token)
        if on_token is not None:
            await on_token(token)

    try:
        for round_no in range(MAX_TOOL_ROUNDS + 1):
            request = LLMRequest(
                model=model,
                messages=chat,
                tools=tools,
                tool_choice="auto" if round_no < MAX_TOOL_ROUNDS else "none",
                temperature=view.agent.llm.temperature,
                max_tokens=min(view.agent.llm.max_tokens, 300),
                passages=passages,
                purpose="voice",
            )
            response = await _stream(provider, request, speak)
            if not response.tool_calls or round_no == MAX_TOOL_ROUNDS:
                break
            chat.append(
                {
                    "role": "assistant",
                    "content": response.text,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in response.tool_calls
                    ],
                }
            )
            for c in response.tool_calls:
                result, ended = _run_tool(ctx, c.name, c.arguments)
                end = end or ended
                chat.append({"role": "tool", "tool_call_id": c.id, "name": c.name, "content": result})
    except LLMError as exc:
        log.warning("voice turn of call %s failed: %s", view.call.id, exc)
        if on_token is not None and not spoken:
            await on_token(APOLOGY)
        return VoiceReply("".join(spoken) or APOLOGY, end=False, error=str(exc))
    text = "".join(spoken).strip()
    if end and not text:
        text = GOODBYE
        if on_token is not None:
            await on_token(text)
    if actions.help_reason:
        await _request_help(deps.store, view.session.id, actions.help_reason)
    return VoiceReply(text, end=end, help_reason=actions.help_reason)


def _run_tool(ctx: ToolContext, name: str, arguments: str) -> tuple[str, bool]:
    if name == "end_call":
        return "The call will end after your goodbye.", True
    tool = BUILTINS.get(name) if name == "request_human" else None
    if tool is None:
        return f"error: there is no tool named '{name}'", False
    try:
        return tool.run(ctx, parse_arguments(arguments)), False
    except ToolArgumentError as exc:
        return f"error: invalid arguments: {exc}", False


async def _request_help(store: AsyncStore, sid: str, reason: str) -> None:
    def plan(session: Session) -> Change | None:
        if session.help_requested:
            return None
        at = now_iso()
        return Change(set={"help_requested": True, "help_requested_at": at, "help_reason": f"call: {reason}"[:500]})

    await store.run(sessions.update(sid, plan))


def entry(role: str, text: str, *, interrupted: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "text": text, "at": now_iso()}
    if interrupted:
        out["interrupted"] = True
    return out


async def record(store: AsyncStore, call_id: str, *entries: dict[str, Any]) -> None:
    """Append to the call's transcript (the call goes on; nothing else changes)."""
    await store.run(calls.write(call_id, calls.CallWrite(transcript=entries)))


def dtmf_text(digits: str) -> str:
    return f"[The caller pressed {' '.join(digits)} on the keypad]"


_SPACES = re.compile(r"\s+")


def clean_speech(text: str) -> str:
    return _SPACES.sub(" ", text).strip()[:2000]


def handoff(view: CallView, reason: str) -> dict[str, Any]:
    """What the relay's `end` frame carries (Twilio passes it to the Connect action)."""
    return {"call_id": view.call.id, "session_id": view.call.session_id, "reason": reason}
