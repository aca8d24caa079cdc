"""The agent turn: answer every unanswered customer message of a session, once.

Concurrency (SPEC §4.2): the ingest script keeps one turn job per session queued or
running (the `turns:pending` slot); a job holds the session's turn lock while it runs and
loops until nothing is left to answer, then releases slot and lock in one atomic step
(`finish_turn`). A message arriving at any point is either seen by that check or queues
a job of its own. A worker that dies leaves an expired lease; the watchdog requeues it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_core import http_tools, intents
from agent_core.llm.base import LLMError, LLMProvider, LLMRequest, Passage, ToolCall
from agent_core.models import Agent, Channel, Message, Role, Session, SessionMode, SessionStatus, now_iso
from agent_core.prompts import PromptInputs, build_messages
from agent_core.store import Batch, Cmd, Store, TurnJob, agents, keys, sessions
from agent_core.store.runner import Op
from agent_core.support import whispers_key
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
DELIVERY_GRACE_MS = 120_000
HOLD_MESSAGE = "Thanks — I've asked a member of our team to join. A person will reply here shortly."

ProviderFor = Callable[[Agent], tuple[LLMProvider, str]]
Deliver = Callable[[Session, Message], None]
Retrieve = Callable[[Agent, str], list[Passage]]
MemoryFor = Callable[[Agent, Session], list[str]]


@dataclass
class TurnDeps:
    store: Store
    provider_for: ProviderFor
    make_job: Callable[[], TurnJob]
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


def notify(session: Session, kind: str, **payload: Any) -> Cmd:
    body = {"type": kind, "session_id": session.id, "agent_id": session.agent_id, **payload}
    return Cmd("PUBLISH", keys.NOTIFY_TURNS, json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def eligible(agent: Agent, session: Session) -> bool:
    """Would the AI speak in this session now (SPEC §4.2)?"""
    if session.status is SessionStatus.closed or session.mode is not SessionMode.ai or session.opted_out:
        return False
    return not (session.help_requested and agent.on_help_requested.value == "hold")


def run_turn(deps: TurnDeps, sid: str) -> str:
    """Entry point of a turn job. Returns what happened (for logs and tests)."""
    store = deps.store
    token = uuid.uuid4().hex
    if not store.run(sessions.acquire_turn(sid, token, deps.lock_ttl_ms)):
        # Another job holds the session; it loops until nothing is left, so this one is done.
        return "busy"
    if deps.leases:
        deps.leases.add(sid, token)
    outcome = "idle"
    finished = False
    try:
        for _ in range(MAX_ROUNDS):
            outcome = _round(deps, sid)
            if outcome == "again":
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


def _reply_notice(session: Session, reply: Message) -> Op[Any]:
    """Tells waiting requests a reply is stored (the final notice comes from finish_turn.lua)."""
    yield notify(
        session,
        "turn",
        final=False,
        answered_upto=session.answered_seq,
        reply=reply.text,
        reply_seq=reply.seq,
        mode=session.mode.value,
        help_requested=session.help_requested,
        state=session.current_state,
        status=session.status.value,
    )


def _round(deps: TurnDeps, sid: str) -> str:
    store = deps.store
    session = store.run(sessions.get(sid))
    if session is None:
        return "gone"
    agent = store.run(agents.get_cached(session.agent_id))
    if agent is None or not eligible(agent, session) or not session.unanswered:
        return "idle"
    debounce_ms = agent.debounce_for(session.channel)
    if debounce_ms and session.last_customer_message_at:
        quiet_for = _ms_since(session.last_customer_message_at)
        if quiet_for < debounce_ms:
            deps.sleep((debounce_ms - quiet_for) / 1000)
            return "again"
    thread, guidance = store.run(_context(sid, session.seq))
    generated = generate(deps, agent, session, thread, guidance)
    return commit_reply(deps, agent, session, generated)


def _context(sid: str, seq: int) -> Op[tuple[list[Message], list[str]]]:
    """The recent thread and the whispers, in one round trip."""
    start = max(1, seq - THREAD_WINDOW + 1)
    raws, whisper_raws = yield Batch(
        Cmd("HMGET", keys.messages(sid), *range(start, seq + 1)) if seq else Cmd("ECHO", ""),
        Cmd("LRANGE", whispers_key(sid), 0, -1),
    )
    thread = [sessions.parse_message(r) for r in (raws if seq else []) if r]
    return thread, [json.loads(r)["text"] for r in whisper_raws]


def _ms_since(iso_ts: str) -> float:
    from datetime import datetime

    then = datetime.fromisoformat(iso_ts.replace("Z", "+00:00"))
    return (time.time() - then.timestamp()) * 1000


def unanswered_text(session: Session, thread: list[Message]) -> str:
    return "\n".join(
        m.text
        for m in thread
        if m.role is Role.customer and m.seq > session.answered_seq and m.kind not in ("help", "optout", "optin")
    )


def generate(deps: TurnDeps, agent: Agent, session: Session, thread: list[Message], guidance: list[str]) -> Generated:
    """Run the model with tools (capped rounds) and return the reply with requested actions."""
    provider, model = deps.provider_for(agent)
    question = unanswered_text(session, thread)
    passages = deps.retrieve(agent, question) if deps.retrieve and question else []
    memory = deps.memory_for(agent, session) if deps.memory_for and agent.memory.enabled else []
    inputs = PromptInputs(
        agent=agent, session=session, thread=thread, memory=memory, passages=passages, whispers=guidance
    )
    chat = build_messages(inputs)
    registry = {**deps.tools, **(http_tools.registry(agent, deps.http) if deps.http else {})}
    tools = offered_tools(agent, session, registry)
    actions = Actions()
    ctx = ToolContext(agent=agent, session=session, actions=actions)
    records: list[dict[str, Any]] = []
    at = now_iso()
    for round_no in range(MAX_TOOL_ROUNDS + 1):
        request = LLMRequest(
            model=model,
            messages=chat,
            tools=tools,
            tool_choice="auto" if round_no < MAX_TOOL_ROUNDS else "none",
            temperature=agent.llm.temperature,
            max_tokens=agent.llm.max_tokens,
            passages=passages,
        )
        try:
            response = provider.complete(request)
        except LLMError as exc:
            log.warning("llm failed for session %s: %s", session.id, exc)
            actions.help_reason = "llm_error"
            return Generated(APOLOGY, actions, records, error=str(exc))
        if not response.tool_calls or round_no == MAX_TOOL_ROUNDS:
            text = (response.text or "").strip()
            by_keyword = _keyword_fallback(agent, question, actions)
            if agent.on_help_requested.value == "hold" and actions.help_reason and not session.help_requested:
                # Under `hold` the AI goes silent after this reply, so it must say a person is coming.
                text = text if text and not by_keyword else HOLD_MESSAGE
            return Generated(text, actions, records)
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
        for call in response.tool_calls:
            result, ok = _run_tool(registry, ctx, call)
            chat.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})
            records.append(
                sessions.new_message(
                    "system",
                    f"{call.name}({call.arguments})",
                    created_at=at,
                    private=True,
                    kind="tool_call",
                    meta={"tool": call.name, "arguments": call.arguments, "result": result, "ok": ok},
                )
            )
    raise AssertionError("unreachable: the last round forbids tools")


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
    extra: dict[str, Any] = {"in_reply_to": session.last_cust_seq}
    if session.channel is not Channel.api:
        extra["delivery"] = {"status": "pending", "updated_at": at}
    if generated.error:
        extra["meta"] = {"llm_error": generated.error[:500]}
    return sessions.new_message("agent", generated.text, created_at=at, **extra)


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


def commit_reply(deps: TurnDeps, agent: Agent, seen: Session, generated: Generated) -> str:
    """Store the reply unless the session moved on (SPEC §4.3); deliver it if stored."""
    store = deps.store
    for _ in range(20):
        current = store.run(sessions.get(seen.id))
        if current is None:
            return "gone"
        at = now_iso()
        reason = _suppression(seen, current)
        if reason is not None:
            draft = sessions.new_message(
                "agent", generated.text, created_at=at, private=True, kind="draft", meta={"suppressed": reason}
            )
            res = store.run(
                sessions.commit(current.id, expect_version=current.version, messages=[*generated.records, draft])
            )
            if res.status == "conflict":
                continue
            return "again" if reason == "newer_message" else "suppressed"
        changes, extra_zadd = _action_changes(agent, current, generated.actions, at)
        if not generated.text:
            # Nothing to say (the model only used tools): record the effects, answer nothing.
            res = store.run(
                sessions.commit(
                    current.id,
                    expect_version=current.version,
                    messages=generated.records,
                    set=changes,
                    answer=True,
                    zadd=extra_zadd,
                )
            )
            if res.status == "conflict":
                continue
            return "silent"
        reply = _reply_message(current, generated, at)
        if current.channel is not Channel.api:
            # Delivered inline below; if this worker dies first, the task sweep delivers it.
            task = f"deliver:{current.id}:{reply['id']}"
            extra_zadd.append((keys.TASKS, time.time() * 1000 + DELIVERY_GRACE_MS, task))
        res = store.run(
            sessions.commit(
                current.id,
                expect_version=current.version,
                messages=[*generated.records, reply],
                set=changes,
                touch=True,
                answer=True,
                zadd=extra_zadd,
            )
        )
        if res.status == "conflict":
            continue
        if not res.ok:
            return res.status
        # What was written is known: no need to read it back.
        stored = Message.model_validate({**reply, "seq": res.seqs[-1], "session_id": current.id})
        after = _after(current, changes, res.version)
        store.run(_reply_notice(after, stored))
        if deps.deliver and after.channel is not Channel.api:
            deps.deliver(after, stored)
        return "replied"
    raise RuntimeError(f"session {seen.id} kept changing; reply not stored")


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


def _action_changes(
    agent: Agent, session: Session, actions: Actions, at: str
) -> tuple[dict[str, Any], list[tuple[str, float, str]]]:
    changes: dict[str, Any] = {}
    zadd: list[tuple[str, float, str]] = []
    if actions.help_reason and not session.help_requested:
        changes.update(help_requested=True, help_requested_at=at, help_reason=actions.help_reason)
    if actions.state and actions.state != session.current_state:
        changes["current_state"] = actions.state
    if actions.state_fields:
        changes["state_fields"] = {**session.metadata.state_fields, **actions.state_fields}
    if actions.end_reason:
        changes.update(status=SessionStatus.closed.value, closed_reason=actions.end_reason, closed_at=at)
        zadd.append((keys.TASKS, time.time() * 1000, f"summary:{session.id}"))
    return changes, zadd
