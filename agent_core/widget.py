"""The web chat widget's domain rules (SPEC §14): lead forms, identity verification, what a
visitor may see of a thread, and finding or opening a visitor's session (channel `web`).

The widget is one more client of the store: sessions open through `sessions.open_session`,
messages come in through `inbound.receive` like every channel's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

from agent_core.models import E164, Agent, Channel, LeadFieldType, LeadForm, Message, Session, SessionStatus
from agent_core.store import Op, messages, sessions

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PUNCTUATION = re.compile(r"[\s().-]")
MAX_LEAD_VALUE = 500
MAX_USER_ID = 200
HISTORY = 200


class WidgetError(Exception):
    """A widget request the domain refuses; `errors` name the fields."""

    def __init__(self, *errors: str) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


def new_visitor_id() -> str:
    return "visitor_" + secrets.token_urlsafe(16)


def phone_number(value: str) -> str | None:
    """An E.164 number from what a person typed (spaces, dots, dashes, parentheses allowed)."""
    number = PHONE_PUNCTUATION.sub("", value.strip())
    return number if E164.match(number) else None


def check_lead(form: LeadForm, values: Mapping[str, Any] | None) -> dict[str, str]:
    """The lead form's values, cleaned (emails lower-cased, phones as E.164), for
    `input_fields`; raises `WidgetError` naming every bad field."""
    values = values or {}
    known = {f.name: f for f in form.fields}
    errors = [f"lead.{name}: not a field of this agent's lead form" for name in values if name not in known]
    out: dict[str, str] = {}
    for name, spec in known.items():
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if spec.required:
                errors.append(f"lead.{name}: required ({spec.label})")
            continue
        if not isinstance(raw, str):
            errors.append(f"lead.{name}: must be a string")
            continue
        value = raw.strip()
        if len(value) > MAX_LEAD_VALUE:
            errors.append(f"lead.{name}: at most {MAX_LEAD_VALUE} characters")
        elif spec.type is LeadFieldType.email and not EMAIL.match(value):
            errors.append(f"lead.{name}: '{value[:100]}' is not an email address")
        elif spec.type is LeadFieldType.tel:
            number = phone_number(value)
            if number is None:
                errors.append(f"lead.{name}: '{value[:100]}' is not a phone number in international format (+…)")
            else:
                out[name] = number
        else:
            out[name] = value.lower() if spec.type is LeadFieldType.email else value
    if errors:
        raise WidgetError(*errors)
    return out


def identity_hash(secret: str, user_id: str) -> str:
    """What the host's server computes for a logged-in user: hex HMAC-SHA256(secret, id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verified_user(agent: Agent, user_id: str, digest: str) -> str:
    """The customer id of a logged-in user of the host site whose hash is right; raises
    `WidgetError` (a 403: nothing is stored) otherwise."""
    secret = agent.widget.identity_secret
    if not secret:
        raise WidgetError("user: identity verification is not set up for this agent (no identity_secret)")
    if not user_id.strip() or len(user_id) > MAX_USER_ID or any(ord(c) < 32 for c in user_id):
        raise WidgetError(f"user.id: 1 to {MAX_USER_ID} printable characters")
    if not hmac.compare_digest(identity_hash(secret, user_id), digest.strip().lower()):
        raise WidgetError("user.hash: does not match user.id (HMAC-SHA256 with the agent's identity_secret)")
    return user_id


def public_view(msg: Message, *, show_author: bool = False) -> dict[str, Any] | None:
    """A message as a visitor sees it, or None when it is not theirs to see: only customer,
    agent and operator messages, never whispers, context, tool calls, drafts or metadata."""
    if not msg.public:
        return None
    out: dict[str, Any] = {
        "id": msg.id,
        "seq": msg.seq,
        "role": msg.role.value,
        "text": msg.text,
        "created_at": msg.created_at,
        "media": [m.model_dump(mode="json") for m in msg.media],
    }
    if show_author and msg.author:
        out["author"] = msg.author
    return out


def session_view(session: Session) -> dict[str, Any]:
    """What a visitor's stream says of their session's state."""
    return {"session_id": session.id, "status": session.status.value, "mode": session.mode.value}


def find_open(agent: Agent, customer_id: str, session_id: str | None = None) -> Op[Session | None]:
    """The visitor's session to continue: `session_id` (theirs, not closed), else their open one."""
    if session_id:
        session = yield from sessions.get(session_id)
        if (
            session is not None
            and session.agent_id == agent.id
            and session.customer_id == customer_id
            and session.status is not SessionStatus.closed
        ):
            return session
    sid = yield from sessions.open_session_id(agent.id, customer_id)
    if not sid:
        return None
    return (yield from sessions.get(sid))


def open_for(agent: Agent, customer_id: str, input_fields: Mapping[str, Any]) -> Op[Session | None]:
    """A new web session for the visitor (welcome message first); None if the agent cannot take it."""
    result = yield from sessions.open_session(
        agent_id=agent.id,
        customer_id=customer_id,
        channel=Channel.web,
        input_fields=input_fields,
        context=(),
        welcome=agent.welcome_message,
    )
    if result.status != "ok" or result.session_id is None:
        return None
    return (yield from sessions.get(result.session_id))


def history(session: Session, *, show_author: bool = False) -> Op[list[dict[str, Any]]]:
    """The last public messages of the thread, oldest first."""
    recent = yield from messages.recent(session.id, session.seq, HISTORY)
    views = (public_view(m, show_author=show_author) for m in recent)
    return [v for v in views if v is not None]
