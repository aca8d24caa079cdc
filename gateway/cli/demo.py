"""The demo agent and small knowledge base `chatgw up` seeds (offline-friendly: no API keys)."""

from __future__ import annotations

from urllib.parse import urlsplit

from agent_core import knowledge
from agent_core.models import AgentSpec
from agent_core.store import Store, agents

DEMO_AGENT_ID = "agent_demo"

DEMO_FAQ = """# Acme Demo Store help center

## Shipping
Standard shipping takes 3 to 5 business days within the US and costs $4.99; it is free on
orders over $50. Express shipping takes 1 to 2 business days and costs $14.99. You get a
tracking link by email as soon as your order ships.

## Returns and refunds
You can return any unused item within 30 days of delivery for a full refund. Start a return
from your order page; we email a prepaid return label. Refunds reach your card within
5 to 10 business days after we receive the item.

## Order changes
You can change or cancel an order until it ships, from your order page or by asking us here.
Once an order has shipped it can no longer be changed, but you can return it.

## Payment
We accept Visa, Mastercard, American Express, PayPal and Apple Pay. We never store your full
card number.
"""

DEMO_AGENT = {
    "name": "Demo Support",
    "welcome_message": "Hi! I'm the demo support agent. Ask me about orders, shipping or returns.",
    "prompt": {
        "type": "single",
        "text": (
            "You are the friendly support agent of Acme Demo Store. Answer questions about orders, "
            "shipping and returns from the knowledge you are given. If you cannot help, or the "
            "customer asks for a person, use the request_human tool. When a phone call would help "
            "(a complicated problem, an upset customer), offer to call them; use the request_call tool "
            "only after they agree."
        ),
    },
    "channels": {"numbers": ["+15550001111", "whatsapp:+15550001111"]},
    "lifecycle": {"dormant_after_s": 1800, "close_after_s": 86400},
    # Voice escalation: "yes, call me" places a call (the dev outbox without Twilio; answer
    # it with `chatgw call CALL_ID`).
    "escalation": {"enabled": True, "from_number": "+15550001111", "max_call_s": 600},
}


DEMO_WIDGET = {
    "enabled": True,
    "title": "Acme Demo Store",
    "greeting": "Hi! Ask me about orders, shipping or returns.",
    "lead_form": {
        "fields": [
            {"name": "name", "label": "Your name", "type": "text", "required": True},
            {"name": "email", "label": "Email", "type": "email", "required": False},
        ]
    },
}


def demo_origins(base_url: str) -> list[str]:
    """Where the demo page is opened from: the gateway's own origin, by name and by address."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    hosts = [parts.hostname or "127.0.0.1"] + [h for h in ("127.0.0.1", "localhost") if h != parts.hostname]
    return [f"{parts.scheme}://{h}{port}" for h in hosts]


def ensure_demo(store: Store, widget_origins: list[str] | None = None) -> str:
    """Create (or repair) the demo agent, its knowledge and its widget (allowing
    `widget_origins`, where the demo page is served); running it twice changes nothing."""
    doc = knowledge.create_document_from_text(store, "Acme help center", DEMO_FAQ, "text/markdown").document
    widget = {**DEMO_WIDGET, "allowed_origins": widget_origins} if widget_origins else {}
    spec = AgentSpec.model_validate({**DEMO_AGENT, "knowledge": {"document_ids": [doc.id]}, "widget": widget})
    existing = store.run(agents.get(DEMO_AGENT_ID))
    if existing is None:
        result = store.run(agents.create(spec, agent_id=DEMO_AGENT_ID))
    elif (
        doc.id not in existing.knowledge.document_ids
        or not existing.escalation.enabled
        or (widget_origins and existing.widget.allowed_origins != spec.widget.allowed_origins)
    ):
        result = store.run(agents.replace(DEMO_AGENT_ID, spec))
    else:
        return DEMO_AGENT_ID
    if result.status not in ("ok", "exists"):
        raise RuntimeError(f"could not create the demo agent ({result.status})")
    return DEMO_AGENT_ID
