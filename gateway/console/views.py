"""View-models: plain dicts the templates render, built from the domain models. The page and
its live updates build them the same way, so a row or a message looks the same either way."""

from __future__ import annotations

from typing import Any

from agent_core.calls import Call, call_availability
from agent_core.models import Agent, Channel, Message, MessageKind, Role, Session, SessionMode, ms_from_iso

PRIVATE_LABEL = {
    Role.whisper: "Whisper (private)",
    Role.context: "Context (private)",
    Role.system: "Note (private)",
}
KIND_LABEL = {
    MessageKind.tool_call: "Tool call (private)",
    MessageKind.draft: "Suppressed draft (private, not sent)",
    MessageKind.command: "Command",
    MessageKind.handback: "Hand-back",
    MessageKind.welcome: "Welcome",
}


def stamp(iso: str | None) -> str:
    """`2026-12-02 01:03:04` from one of our ISO timestamps (UTC)."""
    return (iso or "")[:19].replace("T", " ")


def millis(iso: str | None) -> int:
    return int(ms_from_iso(iso)) if iso else 0


def badges(session: Session) -> list[dict[str, str]]:
    out = []
    if session.help_requested:
        out.append({"kind": "help", "label": "Help requested"})
    if session.live_call:
        out.append({"kind": "call", "label": "Live call"})
    if session.delivery_error:
        out.append({"kind": "error", "label": "Delivery error"})
    if session.opted_out:
        out.append({"kind": "optout", "label": "Opted out"})
    if session.channel.capabilities.session_window_s is not None and session.outside_window():
        out.append({"kind": "window", "label": f"Outside {session.channel.capabilities.label} window"})
    return out


def session_row(session: Session, agent_name: str, preview: Message | None) -> dict[str, Any]:
    return {
        "id": session.id,
        "url": f"/console/sessions/{session.id}",
        "customer_id": session.customer_id,
        "channel": session.channel.value,
        "agent": agent_name,
        "status": session.status.value,
        "mode": session.mode.value,
        "active_human": session.active_human or "",
        "help_requested": session.help_requested,
        "help_reason": session.help_reason or "",
        "help_ms": millis(session.help_requested_at),
        "activity": stamp(session.last_activity_at or session.updated_at),
        "activity_ms": millis(session.last_activity_at or session.updated_at),
        "preview": preview.text[:140] if preview else "",
        "preview_role": preview.role.value if preview else "",
        "badges": badges(session),
        "ai_replying": ai_replying(session),
    }


def ai_replying(session: Session) -> bool:
    """A customer message waits for the AI (what an inbox shows as "AI is typing")."""
    return session.mode is SessionMode.ai and session.status.value != "closed" and session.unanswered


def message_view(msg: Message) -> dict[str, Any]:
    private = msg.private or not msg.public
    label = KIND_LABEL.get(msg.kind) if msg.kind else None
    if label is None:
        label = PRIVATE_LABEL.get(msg.role, msg.role.value.capitalize())
    delivery = msg.delivery
    return {
        "id": msg.id,
        "seq": msg.seq,
        "role": msg.role.value,
        "kind": msg.kind.value if msg.kind else "",
        "label": label,
        "private": private,
        "text": msg.text,
        "author": msg.author or "",
        "at": stamp(msg.created_at),
        "at_iso": msg.created_at,
        "channel": msg.channel.value if msg.channel else "",
        "media": [{"url": m.url, "content_type": m.content_type} for m in msg.media],
        "delivery": (
            {
                "status": delivery.status.value,
                "failed": delivery.status.value in ("failed", "undelivered"),
                "error": " ".join(str(x) for x in (delivery.error_code, delivery.error_message) if x not in (None, "")),
            }
            if delivery
            else None
        ),
        "parts": msg.parts or 0,
    }


ACTIONS = (
    ("takeover", "Take over"),
    ("end", "Hand back to AI"),
    ("resolve", "Resolve help request"),
    ("close", "Close"),
)


def outbox_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A dev-outbox entry (a message or a call that was not sent) for `_outbox_entries.html`."""
    url = str(entry.get("url") or "")
    call_id = url.rsplit("/", 1)[-1] if entry.get("kind") == "call" and "/twilio/voice/" in url else ""
    return {**entry, "at": stamp(entry.get("created_at")), "call_id": call_id}


def session_panel(
    session: Session,
    agent: Agent | None,
    availability: dict[str, str | None],
    memory: list[dict[str, Any]],
    operator: str,
    calls: list[Call],
) -> dict[str, Any]:
    return {
        "id": session.id,
        "customer_id": session.customer_id,
        "customer_address": session.customer_address or "",
        "channel": session.channel.value,
        "agent": agent.name if agent else session.agent_id,
        "agent_id": session.agent_id,
        "status": session.status.value,
        "mode": session.mode.value,
        "active_human": session.active_human or "",
        "handled_by_me": session.active_human == operator,
        "help_requested": session.help_requested,
        "help_reason": session.help_reason or "",
        "help_at": stamp(session.help_requested_at),
        "help_ms": millis(session.help_requested_at),
        "current_state": session.current_state,
        "created_at": stamp(session.created_at),
        "activity": stamp(session.last_activity_at),
        "summary": session.summary or "",
        "closed_reason": session.closed_reason or "",
        "badges": badges(session),
        "input_fields": session.metadata.input_fields,
        "state_fields": session.metadata.state_fields,
        "context": session.metadata.context,
        "memory": memory,
        "calls": [
            {
                "id": c.id,
                "status": c.status.value,
                "to": c.to,
                "reason": c.reason or "",
                "summary": c.summary or "",
                "duration_s": c.duration_s,
                "placed": c.placed,
                "error": f"{c.error_code}: {c.error_message or ''}" if c.error_code else "",
                "transcript": [t.model_dump(mode="json") for t in c.transcript],
            }
            for c in calls
        ],
        "call_refusal": call_availability(session, agent),
        # API and web sessions have no phone number of their own: the operator gives one.
        "call_needs_number": session.channel not in (Channel.sms, Channel.whatsapp),
        "actions": [{"command": c, "label": label, "refusal": availability.get(c)} for c, label in ACTIONS],
        "availability": availability,
        "ai_replying": ai_replying(session),
        "composer_default": "message" if session.mode is SessionMode.support else "whisper",
        # Past the WhatsApp window only an approved template may go out.
        "needs_template": session.status.value != "closed"
        and not session.opted_out
        and session.channel.capabilities.session_window_s is not None
        and session.outside_window(),
    }
