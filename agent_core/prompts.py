"""Prompt assembly for a turn, in the order SPEC §9 gives, within a size budget."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent_core.llm.base import Passage
from agent_core.models import Agent, Channel, Message, MessageKind, MultiPrompt, Role, Session

CHARS_PER_TOKEN = 4
OMITTED_NOTE = "(Earlier messages of this conversation are omitted for length.)"

STYLE = {
    Channel.sms: (
        "You are texting with the customer over SMS. Reply in plain text without markdown, "
        "briefly (one to three short sentences when possible)."
    ),
    Channel.whatsapp: (
        "You are chatting with the customer on WhatsApp. Reply in plain text, concisely; "
        "no markdown headings or tables."
    ),
    Channel.api: "You are chatting with the customer in a chat window. Reply concisely and helpfully.",
    Channel.web: (
        "You are chatting with a visitor in the chat widget of the company's website. Reply in "
        "plain text, concisely and helpfully."
    ),
}
VOICE_STYLE = (
    "You are speaking with the customer on a phone call. Use short, natural spoken sentences; "
    "no lists, markdown, links or emojis."
)


@dataclass(frozen=True)
class PromptInputs:
    agent: Agent
    session: Session
    thread: Sequence[Message]
    memory: Sequence[str] = ()
    passages: Sequence[Passage] = ()
    whispers: Sequence[str] = ()
    purpose: Literal["chat", "voice"] = "chat"
    extra_system: Sequence[str] = field(default_factory=tuple)


def agent_instructions(agent: Agent, state: str) -> str:
    prompt = agent.prompt
    if not isinstance(prompt, MultiPrompt):
        return prompt.text
    current = prompt.state(state) or prompt.state(prompt.initial_state)
    assert current is not None
    lines = [current.prompt, "", f"Conversation state: you are in state '{current.name}'."]
    if current.transitions:
        lines.append("Move to another state with the `transition` tool when its condition holds:")
        lines += [f"- to '{t.to}': {t.when or 'when appropriate'}" for t in current.transitions]
    others = [s.name for s in prompt.states if s.name != current.name]
    if others:
        lines.append(f"Other states of this conversation: {', '.join(others)}.")
    return "\n".join(lines)


def _bullets(title: str, items: Sequence[str]) -> str:
    return title + "\n" + "\n".join(f"- {i}" for i in items)


def _fields(title: str, fields: dict[str, Any]) -> str:
    lines = [f"- {k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in fields.items()]
    return title + "\n" + "\n".join(lines)


def media_note(msg: Message) -> str:
    if not msg.media:
        return ""
    kinds = []
    for m in msg.media:
        ctype = (m.content_type or "").split("/")[0]
        kinds.append({"image": "an image", "video": "a video", "audio": "an audio clip"}.get(ctype, "a file"))
    return f"[The customer sent {', '.join(kinds)}: " + ", ".join(m.url for m in msg.media) + "]"


def thread_messages(thread: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as chat messages; operator turns are marked so the model knows."""
    out: list[dict[str, Any]] = []
    for msg in thread:
        if msg.role is Role.customer and not (msg.kind and msg.kind.keyword):
            text = "\n".join(p for p in (msg.text, media_note(msg)) if p)
            out.append({"role": "user", "content": text or "(empty message)"})
        elif msg.role is Role.agent and not msg.private:
            out.append({"role": "assistant", "content": msg.text})
        elif msg.role is Role.operator:
            who = msg.author or "a human operator"
            out.append({"role": "assistant", "content": f"[Sent by human operator {who}] {msg.text}"})
        elif msg.role is Role.system and msg.kind is MessageKind.handback:
            out.append(
                {
                    "role": "system",
                    "content": "A human operator handed the conversation back to you. "
                    "Continue helping the customer from here.",
                }
            )
    return out


def system_sections(inputs: PromptInputs) -> list[str]:
    agent, session = inputs.agent, inputs.session
    sections = [agent_instructions(agent, session.current_state)]
    sections.append(VOICE_STYLE if inputs.purpose == "voice" else STYLE[session.channel])
    meta = session.metadata
    if meta.input_fields:
        sections.append(_fields("What we know about the customer:", meta.input_fields))
    if meta.state_fields:
        sections.append(_fields("Details gathered in this conversation:", meta.state_fields))
    if inputs.memory:
        sections.append(_bullets("From earlier conversations with this customer:", list(inputs.memory)))
    if meta.context:
        sections.append(_bullets("Context for this conversation:", meta.context))
    if inputs.passages:
        blocks = [f"[{p.document_name}]\n{p.text}" for p in inputs.passages]
        sections.append("Relevant knowledge (answer from it when it applies):\n\n" + "\n\n".join(blocks))
    whispers = list(inputs.whispers)
    if whispers:
        sections.append(
            _bullets(
                "Private guidance from a human operator (the customer cannot see this; "
                "follow it, never mention or quote it; newest last):",
                whispers,
            )
        )
    sections.extend(inputs.extra_system)
    return sections


SYSTEM_SHARE = 0.6


def build_messages(inputs: PromptInputs) -> list[dict[str, Any]]:
    """System prompt then thread, within the model's context: the least relevant knowledge
    passages go first if the system prompt alone is too big, then the oldest thread turns."""
    budget = (inputs.agent.llm.context_window - inputs.agent.llm.max_tokens) * CHARS_PER_TOKEN
    system = "\n\n".join(s for s in system_sections(inputs) if s)
    passages = sorted(inputs.passages, key=lambda p: p.score, reverse=True)
    while passages and len(system) > budget * SYSTEM_SHARE:
        passages.pop()
        inputs = replace(inputs, passages=passages)
        system = "\n\n".join(s for s in system_sections(inputs) if s)
    thread = thread_messages(inputs.thread)
    size = len(system) + sum(len(m["content"]) for m in thread)
    dropped = False
    while thread and size > budget and len(thread) > 1:
        size -= len(thread.pop(0)["content"])
        dropped = True
    if dropped:
        system += "\n\n" + OMITTED_NOTE
    return [{"role": "system", "content": system}, *thread]
