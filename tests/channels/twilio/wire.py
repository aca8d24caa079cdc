"""Twilio wire formats for tests: SIDs, inbound webhook forms, REST resources and error bodies as Twilio sends them."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx

from channels.twilio.forms import inbound_form
from channels.twilio.forms import new_sid as sid

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 32
API_BASE = "https://api.twilio.com"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
CUSTOMER = "+15557654321"
AGENT_NUMBER = "+15550001111"


def sms_form(**overrides: str) -> dict[str, str]:
    """An inbound SMS webhook form with every field Twilio sends."""
    form = inbound_form(
        message_sid=sid(), account_sid=ACCOUNT_SID, from_=CUSTOMER, to=AGENT_NUMBER, body="Hello, where is my order?"
    )
    return form | overrides


def whatsapp_form(**overrides: str) -> dict[str, str]:
    """An inbound WhatsApp webhook form as Twilio sends it."""
    form = inbound_form(
        message_sid=sid(),
        account_sid=ACCOUNT_SID,
        from_=CUSTOMER,
        to=AGENT_NUMBER,
        body="Hi there",
        profile_name="Ada Lovelace",
        whatsapp=True,
    )
    return form | overrides


def message_resource(form: dict[str, Any], status: str = "queued", message_sid: str | None = None) -> dict[str, Any]:
    """The Message resource Twilio returns (201) for a create request with `form`."""
    message_sid = message_sid or sid()
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": "Thu, 27 Nov 2025 16:06:00 +0000",
        "date_sent": None,
        "date_updated": "Thu, 27 Nov 2025 16:06:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": str(len(form.get("MediaUrl", []))),
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": message_sid,
        "status": status,
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media.json"},
        "to": form["To"],
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}.json",
    }


def error_body(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def form_fields(request: httpx.Request) -> dict[str, list[str]]:
    """The form fields Twilio received, every value as a list (MediaUrl repeats)."""
    return urllib.parse.parse_qs(request.content.decode(), keep_blank_values=True)


def single_fields(request: httpx.Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.content.decode(), keep_blank_values=True))


def created(request: httpx.Request, message_sid: str | None = None, status: str = "queued") -> httpx.Response:
    """Twilio's 201 answer echoing the request, like the real API."""
    form = {k: v if k == "MediaUrl" else v[0] for k, v in form_fields(request).items()}
    return httpx.Response(201, json=message_resource(form, status, message_sid))
