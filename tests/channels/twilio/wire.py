"""Twilio wire formats for tests: SIDs, inbound webhook forms, REST resources and error bodies as Twilio sends them."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import httpx

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 32
API_BASE = "https://api.twilio.com"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def sms_form(**overrides: str) -> dict[str, str]:
    """An inbound SMS webhook form with every field Twilio sends."""
    message_sid = sid()
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": message_sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": "Hello, where is my order?",
        "FromCountry": "US",
        "To": "+15550001111",
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": "+15557654321",
        "ApiVersion": "2010-04-01",
    }
    form.update(overrides)
    return form


def whatsapp_form(**overrides: str) -> dict[str, str]:
    """An inbound WhatsApp webhook form as Twilio sends it."""
    message_sid = sid()
    form = {
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ProfileName": "Ada Lovelace",
        "MessageType": "text",
        "SmsSid": message_sid,
        "WaId": "15557654321",
        "SmsStatus": "received",
        "Body": "Hi there",
        "To": "whatsapp:+15550001111",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+15557654321",
        "ApiVersion": "2010-04-01",
    }
    form.update(overrides)
    return form


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
