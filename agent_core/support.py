"""Operator commands on a session (SPEC §5): takeover, tell, whisper, end, close, resolve, message.

Each command is one compare-and-set write (`sessions.update`): the state change, the thread
entries (the command record with the operator's identity, the operator's message, the
whisper) and the follow-up work (a turn, a delivery, a summary) are written together or not
at all. A command is one handler in `HANDLERS`, planning its part of the write from the
session it was read from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent_core.models import (
    Agent,
    MessageKind,
    Role,
    Session,
    SessionMode,
    SessionStatus,
    now_iso,
    outbound_fields,
)
from agent_core.store import Change, CommitResult, Contention, Work, WriteStatus, sessions
from agent_core.store.runner import Op

MAX_MESSAGE = 1600 * 10


class Command(StrEnum):
    takeover = "takeover"
    tell = "tell"
    whisper = "whisper"
    end = "end"
    close = "close"
    resolve = "resolve"


SWITCHABLE = (Command.whisper, Command.tell, Command.takeover)


class CommandError(Exception):
    """The command cannot run: `status` 422 (or 404), with the field and the reason."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CommandResult:
    data: dict[str, Any]
    session: Session
    delivered: dict[str, Any] | None = field(default=None)


def check_can_send(session: Session) -> None:
    """Refuse operator text the channel must not carry (opted out, outside the window)."""
    if session.opted_out:
        raise CommandError("message: the customer opted out (STOP); nothing can be sent until they send START")
    if session.outside_window():
        raise CommandError(f"message: {session.window_refusal()}; send a template")


def operator_message(session: Session, operator: str, text: str, at: str) -> tuple[dict[str, Any], list[Work]]:
    """The operator's message and, on a delivered channel, the work that delivers it."""
    extra: dict[str, Any] = {"author": operator, "in_reply_to": session.last_cust_seq or None}
    msg = sessions.new_message(Role.operator, text, created_at=at, **extra, **outbound_fields(session, at))
    return msg, [Work.deliver(session.id, msg["id"])] if session.channel.delivered else []


@dataclass(frozen=True)
class Request:
    session: Session
    operator: str
    text: str
    at: str


@dataclass
class Plan:
    """A command's part of the write, and what the API answers."""

    set: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    whisper: dict[str, Any] | None = None
    work: list[Work] = field(default_factory=list)
    answer: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    delivered: dict[str, Any] | None = None

    def say(self, req: Request) -> None:
        """Deliver the operator's text to the customer."""
        check_can_send(req.session)
        msg, work = operator_message(req.session, req.operator, req.text, req.at)
        self.messages.append(msg)
        self.work.extend(work)
        self.delivered = msg


def _takeover(req: Request) -> Plan:
    plan = Plan(
        set={
            "mode": SessionMode.support.value,
            "active_human": req.operator,
            "help_requested": False,
            "help_reason": "",
        },
        data={"active_human": req.operator},
    )
    if req.text.strip():
        # A takeover message counts as answering the customer.
        plan.say(req)
        plan.answer = True
    return plan


def _tell(req: Request) -> Plan:
    plan = Plan(data={"reply": req.text})
    plan.say(req)
    return plan


def _whisper(req: Request) -> Plan:
    return Plan(
        messages=[sessions.new_message(Role.whisper, req.text, created_at=req.at, author=req.operator, private=True)],
        whisper={"text": req.text, "author": req.operator, "at": req.at},
        work=[Work.turn()],
    )


def _end(req: Request) -> Plan:
    note = sessions.new_message(
        Role.system,
        "A human operator handed the conversation back to the AI.",
        created_at=req.at,
        author=req.operator,
        private=True,
        kind=MessageKind.handback,
    )
    return Plan(set={"mode": SessionMode.ai.value, "active_human": ""}, messages=[note], work=[Work.turn()])


def _close(req: Request) -> Plan:
    return Plan(set=sessions.closing("closed_by_operator", req.at), work=[Work.summary(req.session.id)])


def _resolve(req: Request) -> Plan:
    return Plan(set={"help_requested": False, "help_reason": ""})


def _message(req: Request) -> Plan:
    if req.session.mode is not SessionMode.support:
        raise CommandError("command: a plain operator message needs support mode; send 'takeover' first, or use 'tell'")
    plan = Plan(data={"reply": req.text}, answer=True)
    plan.say(req)
    return plan


HANDLERS: dict[Command | None, Callable[[Request], Plan]] = {
    Command.takeover: _takeover,
    Command.tell: _tell,
    Command.whisper: _whisper,
    Command.end: _end,
    Command.close: _close,
    Command.resolve: _resolve,
    None: _message,
}
NEEDS_TEXT = (Command.tell, Command.whisper, None)


def _check_open(session: Session) -> None:
    if session.status is SessionStatus.closed:
        raise CommandError(f"session_id: session '{session.id}' is closed")


def _write(session_id: str, plan: Callable[[Session], Change]) -> Op[CommitResult]:
    """Run a compare-and-set write, mapping what the store reports to CommandErrors."""
    try:
        res = yield from sessions.update(session_id, plan)
    except Contention:
        raise CommandError("session_id: the session is changing too quickly; retry") from None
    if res.status is WriteStatus.missing:
        raise CommandError(f"session_id: no session with id '{session_id}'", status=404)
    if res.status is WriteStatus.closed:
        raise CommandError(f"session_id: session '{session_id}' is closed")
    if res.status is not WriteStatus.ok or res.result is None:
        raise CommandError(f"session_id: could not apply the command ({res.status})")
    return res.result


def run_command(
    *, session_id: str, agent: Agent, operator: str, command: Command | None, message: str | None
) -> Op[CommandResult]:
    """Apply one command; raises CommandError for anything §5 forbids."""
    text = (message or "").strip("\x00")
    if command in SWITCHABLE and not getattr(agent.support_commands, command.value):
        raise CommandError(f"command: '{command.value}' is disabled for this agent")
    if command in NEEDS_TEXT and not text.strip():
        what = f"'{command.value}'" if command else "a plain operator message"
        raise CommandError(f"message: {what} needs a non-empty message")
    if len(text) > MAX_MESSAGE:
        raise CommandError(f"message: longer than {MAX_MESSAGE} characters")
    name = command.value if command else None
    planned: list[Plan] = []

    def plan(session: Session) -> Change:
        _check_open(session)
        at = now_iso()
        p = HANDLERS[command](Request(session, operator, text, at))
        planned[:] = [p]
        record = sessions.new_message(
            Role.system,
            f"{operator}: {name or 'message'}",
            created_at=at,
            author=operator,
            private=True,
            kind=MessageKind.command,
            meta={"command": name},
        )
        return Change(
            set=p.set,
            messages=[record, *p.messages],
            whisper=p.whisper,
            work=p.work,
            touch=True,
            answer=p.answer,
            require_open=True,
        )

    yield from _write(session_id, plan)
    after = yield from sessions.get(session_id)
    assert after is not None
    data = {"state": "ok", "session_id": session_id, "command": name, **planned[0].data}
    return CommandResult(data=data, session=after, delivered=planned[0].delivered)


def availability(session: Session, agent: Agent, operator: str) -> dict[str, str | None]:
    """Per command name ('message' for a plain operator message): None when it can run now,
    else why not (what a console shows instead of the button). `run_command` still decides."""
    if session.status is SessionStatus.closed:
        reason = "the session is closed"
        return {name: reason for name in (*(c.value for c in Command), "message")}
    out: dict[str, str | None] = {c.value: None for c in Command}
    try:
        check_can_send(session)
        send_refusal = None
    except CommandError as exc:
        send_refusal = str(exc).removeprefix("message: ")
    out[Command.tell.value] = send_refusal
    out["message"] = send_refusal
    if session.mode is not SessionMode.support:
        out["message"] = "reply as yourself after taking over (or use tell)"
        out[Command.end.value] = "the AI is already in charge"
    elif session.active_human == operator:
        out[Command.takeover.value] = "you are handling this conversation"
    if not session.help_requested:
        out[Command.resolve.value] = "no help request to resolve"
    for command in SWITCHABLE:
        if not getattr(agent.support_commands, command.value):
            out[command.value] = f"'{command.value}' is disabled for this agent"
    return out


def send_template(
    *, session_id: str, operator: str, content_sid: str, content_variables: dict[str, str] | None
) -> Op[dict[str, Any]]:
    """Send an approved Content API template (allowed outside the WhatsApp 24-hour window)."""
    sent: list[dict[str, Any]] = []

    def plan(session: Session) -> Change:
        _check_open(session)
        if not session.channel.delivered:
            raise CommandError("session_id: templates are sent on SMS and WhatsApp sessions only")
        if session.opted_out:
            raise CommandError("session_id: the customer opted out (STOP); nothing can be sent until they send START")
        at = now_iso()
        msg = sessions.new_message(
            Role.operator,
            f"[template {content_sid}]",
            created_at=at,
            author=operator,
            **outbound_fields(session, at),
            meta={"content_sid": content_sid, "content_variables": content_variables or {}},
        )
        sent[:] = [msg]
        return Change(messages=[msg], touch=True, work=[Work.deliver(session.id, msg["id"])], require_open=True)

    result = yield from _write(session_id, plan)
    return {"state": "ok", "session_id": session_id, "message_id": sent[0]["id"], "seq": result.seqs[-1]}
