"""The agent turn: answer every unanswered customer message of a session, once.

Concurrency (SPEC §4.2): the ingest script keeps one turn job per session queued or
running (the `turns:pending` slot); a job holds the session's turn lock while it runs and
loops until nothing is left to answer, then releases slot and lock in one atomic step
(`finish_turn`). A message arriving at any point is either seen by that check or queues
a job of its own. A worker that dies leaves an expired lease; the watchdog requeues it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from agent_core import http_tools, intents
from agent_core.llm.base import LLMError, LLMProvider, LLMRequest, Passage, ToolCall, ToolSpec
from agent_core.models import (
    Agent,
    Message,
    MessageKind,
    OnHelpRequested,
    Role,
    Session,
    SessionMode,
    SessionStatus,
    ms_from_iso,
    now_iso,
    outbound_fields,
)
from agent_core.prompts import PromptInputs, build_messages
from agent_core.store import Change, Op, Store, Work, agents, messages, notices, sessions
from agent_core.tools import (
    BUILTINS,
    Actions,
    BuiltinTool,
    ToolArgumentError,
    ToolContext,
    offered_tools,
    parse_arguments,
)

log = logging.getLogger("agent_core.turns")

LOCK_TTL_MS = 30_000
MAX_ROUNDS = 25
MAX_TOOL_ROUNDS = 4
THREAD_WINDOW = 60
TOOL_RESULT_LIMIT = 4_000
APOLOGY = "Sorry — I'm having trouble answering right now. A member of our team will follow up with you shortly."
HOLD_MESSAGE = "Thanks — I've asked a member of our team to join. A person will reply here shortly."

ProviderFor = Callable[[Agent], tuple[LLMProvider, str]]
Deliver = Callable[[Session, Message], None]
Retrieve = Callable[[Agent, str], list[Passage]]
MemoryFor = Callable[[Agent, Session], list[str]]


class TurnOutcome(StrEnum):
    """What a turn (or one round of it) did, for logs and tests."""

    busy = "busy"  # another job holds the session's turn; it answers everything
    idle = "idle"  # nothing for the AI to answer
    gone = "gone"  # the session no longer exists
    again = "again"  # look again: a debounce wait ended, or a newer message arrived
    replied = "replied"
    silent = "silent"  # the model only used tools
    suppressed = "suppressed"  # the session moved on (SPEC §4.3); kept as a draft


@dataclass
class TurnDeps:
    store: Store
    provider_for: ProviderFor
    deliver: Deliver | None = None
    retrieve: Retrieve | None = None
    memory_for: MemoryFor | None = None
    tools: Mapping[str, BuiltinTool] = field(default_factory=lambda: dict(BUILTINS))
    http: httpx.Client | None = None
    leases: LeaseKeeper | None = None
    lock_ttl_ms: int = LOCK_TTL_MS
    sleep: Callable[[float], None] = time.sleep


class LeaseKeeper:
    """One background thread renewing the locks (and leases) of every turn this process runs."""

    def __init__(self, store: Store, ttl_ms: int = LOCK_TTL_MS) -> None:
        self.store = store
        self.ttl_ms = ttl_ms
        self._held: dict[str, str] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, sid: str, token: str) -> None:
        with self._mutex:
            self._held[sid] = token
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="turn-leases", daemon=True)
                self._thread.start()

    def discard(self, sid: str) -> None:
        with self._mutex:
            self._held.pop(sid, None)

    def renew_now(self) -> None:
        with self._mutex:
            held = list(self._held.items())
        for sid, token in held:
            self.store.run(sessions.renew_turn(sid, token, self.ttl_ms))

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.renew_now()
            except Exception:  # a Redis blip must not kill the renewer; the next tick retries
                log.exception("renewing turn leases failed")

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Generated:
    text: str
    actions: Actions
    records: list[dict[str, Any]]
    error: str | None = None


def run_turn(deps: TurnDeps, sid: str) -> TurnOutcome:
    """Entry point of a turn job."""
    store = deps.store
    token = uuid.uuid4().hex
    if not store.run(sessions.acquire_turn(sid, token, deps.lock_ttl_ms)):
        # Another job holds the session; it loops until nothing is left, so this one is done.
        return TurnOutcome.busy
    if deps.leases:
        deps.leases.add(sid, token)
    outcome = TurnOutcome.idle
    finished = False
    try:
        for _ in range(MAX_ROUNDS):
            outcome = _round(deps, sid)
            if outcome is TurnOutcome.again:
                continue
            # Releases slot and lock and publishes the final notice (lua/finish_turn.lua).
            if store.run(sessions.finish_turn(sid, token)) is not None:
                finished = True
                return outcome
        return outcome
    finally:
        if deps.leases:
            deps.leases.discard(sid)
        if not finished:
            store.run(sessions.release_turn(sid, token))


def _round(deps: TurnDeps, sid: str) -> TurnOutcome:
    store = deps.store
    session, eligible = store.run(sessions.get_for_turn(sid))
    if session is None:
        return TurnOutcome.gone
    agent = store.run(agents.get_cached(session.agent_id))
    if agent is None or not eligible or not session.unanswered:
        return TurnOutcome.idle
    debounce_ms = agent.debounce_for(session.channel)
    if debounce_ms and session.last_customer_message_at:
        quiet_for = time.time() * 1000 - ms_from_iso(session.last_customer_message_at)
        if quiet_for < debounce_ms:
            deps.sleep((debounce_ms - quiet_for) / 1000)
            return TurnOutcome.again
    thread, guidance = store.run(messages.thread_and_whispers(sid, session.seq, THREAD_WINDOW))
    store.run(notices.publish_replying(sid, session.agent_id))
    generated = generate(deps, agent, session, thread, guidance)
    return commit_reply(deps, agent, session, generated)


def unanswered_text(session: Session, thread: list[Message]) -> str:
    return "\n".join(
        m.text
        for m in thread
        if m.role is Role.customer and m.seq > session.answered_seq and not (m.kind and m.kind.keyword)
    )


@dataclass
class _Conversation:
    """One generation in progress: the chat so far, the tools offered, what they did."""

    chat: list[dict[str, Any]]
    registry: Mapping[str, BuiltinTool]
    tools: list[ToolSpec]
    ctx: ToolContext
    passages: list[Passage]
    records: list[dict[str, Any]] = field(default_factory=list)

    def request(self, agent: Agent, model: str, round_no: int) -> LLMRequest:
        return LLMRequest(
            model=model,
            messages=self.chat,
            tools=self.tools,
            tool_choice="auto" if round_no < MAX_TOOL_ROUNDS else "none",
            temperature=agent.llm.temperature,
            max_tokens=agent.llm.max_tokens,
            passages=self.passages,
        )

    def run_tools(self, text: str | None, calls: list[ToolCall], at: str) -> None:
        """Answer the model's tool calls in the chat and record each in the thread."""
        self.chat.append(
            {
                "role": "assistant",
                "content": text,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        for call in calls:
            result, ok = _run_tool(self.registry, self.ctx, call)
            self.chat.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})
            self.records.append(
                sessions.new_message(
                    Role.system,
                    f"{call.name}({call.arguments})",
                    created_at=at,
                    private=True,
                    kind=MessageKind.tool_call,
                    meta={"tool": call.name, "arguments": call.arguments, "result": result, "ok": ok},
                )
            )


def _converse(
    deps: TurnDeps, agent: Agent, session: Session, thread: list[Message], guidance: list[str], question: str
) -> _Conversation:
    """The prompt (SPEC §9) and the tools offered for this turn."""
    passages = deps.retrieve(agent, question) if deps.retrieve and question else []
    memory = deps.memory_for(agent, session) if deps.memory_for and agent.memory.enabled else []
    inputs = PromptInputs(
        agent=agent, session=session, thread=thread, memory=memory, passages=passages, whispers=guidance
    )
    registry = {**deps.tools, **(http_tools.registry(agent, deps.http) if deps.http else {})}
    return _Conversation(
        chat=build_messages(inputs),
        registry=registry,
        tools=offered_tools(agent, session, registry),
        ctx=ToolContext(agent=agent, session=session, actions=Actions()),
        passages=passages,
    )


def generate(deps: TurnDeps, agent: Agent, session: Session, thread: list[Message], guidance: list[str]) -> Generated:
    """Run the model with tools (capped rounds) and return the reply with requested actions."""
    provider, model = deps.provider_for(agent)
    question = unanswered_text(session, thread)
    conv = _converse(deps, agent, session, thread, guidance, question)
    actions = conv.ctx.actions
    at = now_iso()
    for round_no in range(MAX_TOOL_ROUNDS + 1):
        try:
            response = provider.complete(conv.request(agent, model, round_no))
        except LLMError as exc:
            log.warning("llm failed for session %s: %s", session.id, exc)
            actions.help_reason = "llm_error"
            return Generated(APOLOGY, actions, conv.records, error=str(exc))
        if not response.tool_calls or round_no == MAX_TOOL_ROUNDS:
            return Generated(_final_text(agent, session, question, actions, response.text), actions, conv.records)
        conv.run_tools(response.text, response.tool_calls, at)
    raise AssertionError("unreachable: the last round forbids tools")


def _final_text(agent: Agent, session: Session, question: str, actions: Actions, text: str | None) -> str:
    reply = (text or "").strip()
    by_keyword = _keyword_fallback(agent, question, actions)
    if agent.on_help_requested is OnHelpRequested.hold and actions.help_reason and not session.help_requested:
        # Under `hold` the AI goes silent after this reply, so it must say a person is coming.
        return reply if reply and not by_keyword else HOLD_MESSAGE
    return reply


def _keyword_fallback(agent: Agent, question: str, actions: Actions) -> bool:
    """Set help when the customer asked for a person and the model did not call the tool."""
    if actions.help_reason is None and question and intents.asks_for_human(question, agent.language):
        actions.help_reason = "customer asked for a person"
        return True
    return False


def _run_tool(registry: Mapping[str, BuiltinTool], ctx: ToolContext, call: ToolCall) -> tuple[str, bool]:
    tool = registry.get(call.name)
    if tool is None or tool.offer(ctx.agent, ctx.session) is None:
        return f"error: there is no tool named '{call.name}'", False
    try:
        result = tool.run(ctx, parse_arguments(call.arguments))
    except ToolArgumentError as exc:
        return f"error: invalid arguments: {exc}", False
    ok = not result.startswith("error: ")
    if len(result) > TOOL_RESULT_LIMIT:
        result = result[:TOOL_RESULT_LIMIT] + f"\n[truncated: {len(result) - TOOL_RESULT_LIMIT} more characters]"
    return result, ok


def _reply_message(session: Session, generated: Generated, at: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"in_reply_to": session.last_cust_seq, **outbound_fields(session, at)}
    if generated.error:
        extra["meta"] = {"llm_error": generated.error[:500]}
    return sessions.new_message(Role.agent, generated.text, created_at=at, **extra)


def _suppression(seen: Session, current: Session) -> str | None:
    if current.status is SessionStatus.closed:
        return "session_closed"
    if current.mode is not SessionMode.ai:
        return "takeover"
    if current.opted_out:
        return "opted_out"
    if current.last_cust_seq > seen.last_cust_seq:
        return "newer_message"
    return None


@dataclass
class _ReplyPlan:
    """What commit_reply decided from the session it read last."""

    outcome: TurnOutcome = TurnOutcome.replied
    reply: dict[str, Any] | None = None
    changes: dict[str, Any] = field(default_factory=dict)


def commit_reply(deps: TurnDeps, agent: Agent, seen: Session, generated: Generated) -> TurnOutcome:
    """Store the reply unless the session moved on (SPEC §4.3); deliver it if stored."""
    decided = _ReplyPlan()

    def plan(current: Session) -> Change:
        at = now_iso()
        reason = _suppression(seen, current)
        if reason is not None:
            draft = sessions.new_message(
                Role.agent,
                generated.text,
                created_at=at,
                private=True,
                kind=MessageKind.draft,
                meta={"suppressed": reason},
            )
            decided.outcome = TurnOutcome.again if reason == "newer_message" else TurnOutcome.suppressed
            decided.reply = None
            return Change(messages=[*generated.records, draft])
        decided.changes, work = _action_changes(agent, current, generated.actions, at)
        if not generated.text:
            # Nothing to say (the model only used tools): record the effects, answer nothing.
            decided.outcome, decided.reply = TurnOutcome.silent, None
            return Change(messages=generated.records, set=decided.changes, answer=True, work=work)
        decided.outcome, decided.reply = TurnOutcome.replied, _reply_message(current, generated, at)
        if current.channel.delivered:
            # Delivered inline below; if this worker dies first, the task sweep delivers it.
            work.append(Work.deliver(current.id, decided.reply["id"]).done_inline())
        return Change(
            messages=[*generated.records, decided.reply], set=decided.changes, touch=True, answer=True, work=work
        )

    res = deps.store.run(sessions.update(seen.id, plan))
    if res.session is None or res.result is None:
        return TurnOutcome.gone
    if decided.reply is None or not res.result.ok:
        return decided.outcome
    # What was written is known: no need to read it back.
    stored = Message.model_validate({**decided.reply, "seq": res.result.seqs[-1], "session_id": seen.id})
    after = _after(res.session, decided.changes, res.result.version)
    deps.store.run(_reply_notice(after, stored))
    if deps.deliver and after.channel.delivered:
        deps.deliver(after, stored)
    return TurnOutcome.replied


def _reply_notice(session: Session, reply: Message) -> Op[None]:
    """Tells waiting requests a reply is stored (the final notice comes from finish_turn.lua)."""
    yield from notices.publish_turn(
        session.id,
        session.agent_id,
        final=False,
        answered_upto=session.answered_seq,
        reply=reply.text,
        reply_seq=reply.seq,
        mode=session.mode.value,
        help_requested=session.help_requested,
        state=session.current_state,
        status=session.status.value,
    )


def _after(current: Session, changes: dict[str, Any], version: int) -> Session:
    """The session as the commit left it (answered up to its last customer message)."""
    update: dict[str, Any] = {"answered_seq": current.last_cust_seq, "version": version}
    if "help_requested" in changes:
        update.update(
            help_requested=True, help_requested_at=changes["help_requested_at"], help_reason=changes["help_reason"]
        )
    if "current_state" in changes:
        update["current_state"] = changes["current_state"]
    if "state_fields" in changes:
        update["metadata"] = current.metadata.model_copy(update={"state_fields": changes["state_fields"]})
    if "status" in changes:
        update.update(status=SessionStatus(changes["status"]), closed_reason=changes["closed_reason"])
    return current.model_copy(update=update)


def _action_changes(agent: Agent, session: Session, actions: Actions, at: str) -> tuple[dict[str, Any], list[Work]]:
    changes: dict[str, Any] = {}
    work: list[Work] = []
    if actions.help_reason and not session.help_requested:
        changes.update(help_requested=True, help_requested_at=at, help_reason=actions.help_reason)
    if actions.state and actions.state != session.current_state:
        changes["current_state"] = actions.state
    if actions.state_fields:
        changes["state_fields"] = {**session.metadata.state_fields, **actions.state_fields}
    if actions.end_reason:
        changes.update(status=SessionStatus.closed.value, closed_reason=actions.end_reason, closed_at=at)
        work.append(Work.summary(session.id))
    return changes, work
