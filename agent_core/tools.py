"""Tools offered to the model: built-ins and (later) the agent's custom HTTP tools.

A tool runs during the turn and returns text for the model. Tools that change the session
return `actions` instead of writing: the turn applies them atomically with the reply, so a
reply that gets suppressed (takeover, newer message) leaves no half-applied effects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_core.llm.base import ToolSpec
from agent_core.models import Agent, MultiPrompt, OnHelpRequested, Session


@dataclass
class Actions:
    """Session changes requested by tools during one turn."""

    help_reason: str | None = None
    end_reason: str | None = None
    state: str | None = None
    state_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    agent: Agent
    session: Session
    actions: Actions


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    offer: Callable[[Agent, Session], ToolSpec | None]
    run: Callable[[ToolContext, dict[str, Any]], str]


class ToolArgumentError(ValueError):
    """Arguments the model sent do not fit the tool's schema."""


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _request_human_offer(agent: Agent, session: Session) -> ToolSpec:
    return ToolSpec(
        "request_human",
        "Ask a human operator to join this conversation. Use it when the customer asks for a person, "
        "or when you cannot help (then give the reason).",
        _schema({"reason": {"type": "string", "description": "Why a human is needed"}}, ["reason"]),
    )


def _request_human_run(ctx: ToolContext, args: dict[str, Any]) -> str:
    reason = str(args.get("reason") or "customer asked for a person")[:500]
    ctx.actions.help_reason = reason
    if ctx.agent.on_help_requested is OnHelpRequested.hold:
        return (
            "A human operator has been asked to join. Tell the customer briefly that a person will reply "
            "here soon; after that you will stay silent until they do."
        )
    return "A human operator has been asked to join. Tell the customer, and keep helping meanwhile."


def _end_session_offer(agent: Agent, session: Session) -> ToolSpec:
    return ToolSpec(
        "end_session",
        "End the conversation once the customer's needs are met and they have said goodbye.",
        _schema({"reason": {"type": "string"}}, ["reason"]),
    )


def _end_session_run(ctx: ToolContext, args: dict[str, Any]) -> str:
    ctx.actions.end_reason = str(args.get("reason") or "ended by agent")[:500]
    return "The conversation will be closed after your reply. Say a short goodbye."


def _transition_offer(agent: Agent, session: Session) -> ToolSpec | None:
    if not isinstance(agent.prompt, MultiPrompt):
        return None
    current = agent.prompt.state(session.current_state) or agent.prompt.state(agent.prompt.initial_state)
    targets = [t.to for t in current.transitions] if current else []
    if not targets:
        return None
    return ToolSpec(
        "transition",
        "Move the conversation to another state when that state's condition holds.",
        _schema({"state": {"type": "string", "enum": targets}}, ["state"]),
    )


def _transition_run(ctx: ToolContext, args: dict[str, Any]) -> str:
    prompt = ctx.agent.prompt
    assert isinstance(prompt, MultiPrompt)
    current = prompt.state(ctx.actions.state or ctx.session.current_state) or prompt.state(prompt.initial_state)
    target = str(args.get("state", ""))
    allowed = [t.to for t in current.transitions] if current else []
    if target not in allowed:
        raise ToolArgumentError(f"cannot move to state '{target}'; allowed: {allowed}")
    ctx.actions.state = target
    return f"Moved to state '{target}'. Follow that state's instructions from now on."


MAX_FIELD_VALUE = 500


def _set_field_offer(agent: Agent, session: Session) -> ToolSpec | None:
    if not isinstance(agent.prompt, MultiPrompt):
        return None
    return ToolSpec(
        "set_field",
        "Remember a detail the customer gave you (e.g. order_number, email) for the rest of the conversation.",
        _schema(
            {
                "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
                "value": {"type": "string", "maxLength": MAX_FIELD_VALUE},
            },
            ["name", "value"],
        ),
    )


def _set_field_run(ctx: ToolContext, args: dict[str, Any]) -> str:
    name, value = str(args.get("name", "")), args.get("value")
    if not name or not name[0].isalpha() or not name.replace("_", "").isalnum() or len(name) > 64:
        raise ToolArgumentError("name: letters, digits and underscores, starting with a letter")
    if not isinstance(value, str) or len(value) > MAX_FIELD_VALUE:
        raise ToolArgumentError(f"value: a string of at most {MAX_FIELD_VALUE} characters")
    ctx.actions.state_fields[name] = value
    return f"Saved {name}."


BUILTINS: dict[str, BuiltinTool] = {
    t.name: t
    for t in (
        BuiltinTool("request_human", _request_human_offer, _request_human_run),
        BuiltinTool("end_session", _end_session_offer, _end_session_run),
        BuiltinTool("transition", _transition_offer, _transition_run),
        BuiltinTool("set_field", _set_field_offer, _set_field_run),
    )
}


def offered_tools(agent: Agent, session: Session, registry: Mapping[str, BuiltinTool]) -> list[ToolSpec]:
    specs = [spec for tool in registry.values() if (spec := tool.offer(agent, session)) is not None]
    return specs


def parse_arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    return value
