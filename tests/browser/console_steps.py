"""What a customer and an operator do in the console's browser tests: a customer texts through
the real signed Twilio webhook (the dev auth token, as `chatgw chat` signs), an operator signs in."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.sync_api import Page, expect
from twilio.request_validator import RequestValidator

from agent_core.store import Store, health, outbound
from channels.twilio.signatures import webhook_url
from tests.browser.gateway import Gateway
from tests.channels.twilio.wire import ACCOUNT_SID

AGENT_NUMBER = "+15550001111"


def make_agent(gw: Gateway, admin: str, name: str = "Acme Support") -> dict[str, Any]:
    r = httpx.post(
        f"{gw.url}/v1/agents",
        json={"name": name, "channels": {"numbers": [AGENT_NUMBER]}, "debounce_ms": 0},
        headers={"API-Token": admin},
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def text_in(gw: Gateway, store: Store, customer: str, body: str) -> None:
    """A customer's SMS through POST /twilio/messages, signed as Twilio signs it."""
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "From": customer,
        "To": AGENT_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }
    token = store.run(health.dev_twilio_token())
    signature = RequestValidator(token).compute_signature(webhook_url(gw.url, "/twilio/messages"), params)
    r = httpx.post(f"{gw.url}/twilio/messages", data=params, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 200, r.text


def received_by(store: Store, customer: str) -> list[str]:
    """What the customer would have received (the dev outbox: Twilio is not configured)."""
    return [e["text"] for e in store.run(outbound.dev_outbox(200)) if e.get("to") == customer]


def sign_in(page: Page, gw: Gateway, token: str, path: str = "/console") -> None:
    page.goto(gw.url + path)
    expect(page.get_by_role("heading", name="Operator console")).to_be_visible()
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
