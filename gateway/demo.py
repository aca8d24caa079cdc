"""The demo agent `chatgw up` seeds (offline-friendly: no API keys needed)."""

from __future__ import annotations

from agent_core.models import AgentSpec

DEMO_AGENT = AgentSpec.model_validate(
    {
        "name": "Demo Support",
        "welcome_message": "Hi! I'm the demo support agent. Ask me about orders, shipping or returns.",
        "prompt": {
            "type": "single",
            "text": (
                "You are the friendly support agent of Acme Demo Store. Answer questions about orders, "
                "shipping and returns from the knowledge you are given. If you cannot help, or the "
                "customer asks for a person, use the request_human tool."
            ),
        },
        "channels": {"numbers": ["+15550001111", "whatsapp:+15550001111"]},
        "lifecycle": {"dormant_after_s": 1800, "close_after_s": 86400},
    }
)
