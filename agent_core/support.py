"""Operator commands on a session (SPEC §5): takeover, tell, whisper, end, close, resolve, message.

Each command is one compare-and-set commit: the state change, the thread entries (the
command record with the operator's identity, the operator's message, the whisper), the
follow-up work (a turn, a delivery, a summary) are written together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from agent_core.lifecycle import close_changes, summary_task
from agent_core.models import Agent, Channel, Session, SessionMode, SessionStatus, now_iso
from agent_core.store import TurnJob, keys, sessions
from agent_core.store.runner import Op

WHISPERS_KEEP = 50
WHATSAPP_WINDOW_S = 24 * 3600
DELIVERY_GRACE_MS = 120_000
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
class Jobs:
    """Job factories the caller provides (agent_core does not know RQ)."""

    turn: Callable[[], TurnJob]
    deliver: Callable[[str, str], TurnJob]
    summary: Callable[[str], TurnJob]


@dataclass
class CommandResult:
    data: dict[str, Any]
    session: Session
    delivered: dict[str, Any] | None = field(default=None)


def whispers_key(sid: str) -> str:
    return f"{keys.P}w:{sid}"


def outside_whatsapp_window(session: Session, now: float | None = None) -> bool:
    if session.channel is not Channel.whatsapp:
        return False
    if not session.last_customer_message_at:
        return True
    last = datetime.fromisoformat(session.last_customer_message_at.replace("Z", "+00:00")).timestamp()
    return (now if now is not None else time.time()) - last > WHATSAPP_WINDOW_S


def check_can_send(session: Session) -> None:
    """Refuse operator text the channel must not carry (opted out, WhatsApp window)."""
    if session.opted_out:
        raise CommandError("message: the customer opted out (STOP); nothing can be sent until they send START")
    if outside_whatsapp_window(session):
        raise CommandError("message: outside the WhatsApp 24-hour window; send a template")


def operator_message(
    session: Session, operator: str, text: str, at: str, jobs: Jobs
) -> tuple[dict[str, Any], list[TurnJob], list[tuple[str, float, str]]]:
    """The message, its delivery job and the delivery's safety-net task (Twilio channels)."""
    extra: dict[str, Any] = {"author": operator, "in_reply_to": session.last_cust_seq or None}
    if session.channel is Channel.api:
        return sessions.new_message("operator", text, created_at=at, **extra), [], []
    extra["delivery"] = {"status": "pending", "updated_at": at}
    msg = sessions.new_message("operator", text, created_at=at, **extra)
    task = (keys.TASKS, time.time() * 1000 + DELIVERY_GRACE_MS, f"deliver:{session.id}:{msg['id']}")
    return msg, [jobs.deliver(session.id, msg["id"])], [task]


def _open(session_id: str) -> Op[Session]:
    session = yield from sessions.get(session_id)
    if session is None:
        raise CommandError(f"session_id: no session with id '{session_id}'", status=404)
    if session.status is SessionStatus.closed:
        raise CommandError(f"session_id: session '{session_id}' is closed")
    return session


def run_command(
    *,
    session_id: str,
    agent: Agent,
    operator: str,
    command: Command | None,
    message: str | None,
    jobs: Jobs,
) -> Op[CommandResult]:
    """Apply one command; raises CommandError for anything §5 forbids."""
    text = (message or "").strip("\x00")
    if command in SWITCHABLE and not getattr(agent.support_commands, command.value):
        raise CommandError(f"command: '{command.value}' is disabled for this agent")
    if command in (Command.tell, Command.whisper, None) and not text.strip():
        what = f"'{command.value}'" if command else "a plain operator message"
        raise CommandError(f"message: {what} needs a non-empty message")
    if len(text) > MAX_MESSAGE:
        raise CommandError(f"message: longer than {MAX_MESSAGE} characters")

    for _ in range(20):
        session = yield from _open(session_id)
        if command is None and session.mode is not SessionMode.support:
            raise CommandError(
                "command: a plain operator message needs support mode; send 'takeover' first, or use 'tell'"
            )
        at = now_iso()
        record = sessions.new_message(
            "system",
            f"{operator}: {command.value if command else 'message'}",
            created_at=at,
            author=operator,
            private=True,
            kind="command",
            meta={"command": command.value if command else None},
        )
        msgs: list[dict[str, Any]] = [record]
        changes: dict[str, Any] = {}
        prepared: list[TurnJob] = []
        zadd: list[tuple[str, float, str]] = []
        rpush: list[tuple[str, str, int | None]] = []
        turn: TurnJob | None = None
        answer = False
        data: dict[str, Any] = {"state": "ok", "session_id": session.id, "command": command.value if command else None}
        delivered = None

        speaks = command in (Command.tell, None) or (command is Command.takeover and bool(text.strip()))
        if speaks:
            check_can_send(session)
            delivered, djobs, tasks = operator_message(session, operator, text, at, jobs)
            msgs.append(delivered)
            prepared.extend(djobs)
            zadd.extend(tasks)
        if command is Command.takeover:
            changes.update(mode=SessionMode.support.value, active_human=operator, help_requested=False, help_reason="")
            answer = speaks
            data["active_human"] = operator
        elif command is Command.tell:
            data["reply"] = text
        elif command is Command.whisper:
            msgs.append(sessions.new_message("whisper", text, created_at=at, author=operator, private=True))
            rpush.append(
                (whispers_key(session.id), json.dumps({"text": text, "author": operator, "at": at}), WHISPERS_KEEP)
            )
            turn = jobs.turn()
        elif command is Command.end:
            changes.update(mode=SessionMode.ai.value, active_human="")
            msgs.append(
                sessions.new_message(
                    "system",
                    "A human operator handed the conversation back to the AI.",
                    created_at=at,
                    author=operator,
                    private=True,
                    kind="handback",
                )
            )
            turn = jobs.turn()
        elif command is Command.close:
            changes.update(close_changes("closed_by_operator", at))
            zadd.append(summary_task(session.id))
            prepared.append(jobs.summary(session.id))
        elif command is Command.resolve:
            changes.update(help_requested=False, help_reason="")
        else:
            answer = True
            data["reply"] = text

        res = yield from sessions.commit(
            session.id,
            expect_version=session.version,
            require_open=True,
            set=changes,
            messages=msgs,
            touch=True,
            answer=answer,
            zadd=zadd,
            rpush=rpush,
            job=turn,
            jobs=prepared,
        )
        if res.status == "conflict":
            continue
        if res.status == "closed":
            raise CommandError(f"session_id: session '{session_id}' is closed")
        if not res.ok:
            raise CommandError(f"session_id: could not apply the command ({res.status})")
        after = yield from sessions.get(session.id)
        assert after is not None
        return CommandResult(data=data, session=after, delivered=delivered)
    raise CommandError("session_id: the session is changing too quickly; retry")


def send_template(
    *,
    session_id: str,
    operator: str,
    content_sid: str,
    content_variables: dict[str, str] | None,
    jobs: Jobs,
) -> Op[dict[str, Any]]:
    """Send an approved Content API template (allowed outside the WhatsApp 24-hour window)."""
    for _ in range(20):
        session = yield from _open(session_id)
        if session.channel is Channel.api:
            raise CommandError("session_id: templates are sent on SMS and WhatsApp sessions only")
        if session.opted_out:
            raise CommandError("session_id: the customer opted out (STOP); nothing can be sent until they send START")
        at = now_iso()
        msg = sessions.new_message(
            "operator",
            f"[template {content_sid}]",
            created_at=at,
            author=operator,
            delivery={"status": "pending", "updated_at": at},
            meta={"content_sid": content_sid, "content_variables": content_variables or {}},
        )
        task = (keys.TASKS, time.time() * 1000 + DELIVERY_GRACE_MS, f"deliver:{session.id}:{msg['id']}")
        res = yield from sessions.commit(
            session.id,
            expect_version=session.version,
            require_open=True,
            messages=[msg],
            touch=True,
            zadd=[task],
            jobs=[jobs.deliver(session.id, msg["id"])],
        )
        if res.status == "conflict":
            continue
        if not res.ok:
            raise CommandError(f"session_id: could not send the template ({res.status})")
        return {"state": "ok", "session_id": session.id, "message_id": msg["id"], "seq": res.seqs[-1]}
    raise CommandError("session_id: the session is changing too quickly; retry")
