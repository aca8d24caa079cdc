"""Turn Twilio webhook forms into typed messages: inbound messages, keywords, delivery status callbacks."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from channels.models import Channel, DeliveryStatus, InboundMessage, Keyword, Media, StatusUpdate
from channels.twilio.errors import OPTED_OUT_CODE, InvalidTwilioRequest

WHATSAPP_PREFIX = "whatsapp:"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

# Twilio's default opt-out, opt-in and help keywords for SMS; WhatsApp gets the same list here.
_KEYWORDS = {
    "stop": Keyword.OPTOUT,
    "stopall": Keyword.OPTOUT,
    "unsubscribe": Keyword.OPTOUT,
    "cancel": Keyword.OPTOUT,
    "end": Keyword.OPTOUT,
    "quit": Keyword.OPTOUT,
    "revoke": Keyword.OPTOUT,
    "optout": Keyword.OPTOUT,
    "start": Keyword.OPTIN,
    "yes": Keyword.OPTIN,
    "unstop": Keyword.OPTIN,
    "help": Keyword.HELP,
}
# Longer than any keyword plus generous punctuation: lets ordinary messages skip normalization.
_KEYWORD_MAX_LEN = 40

# Twilio sends a handful of fields per message (up to ten media items); a body with far more is not Twilio.
_MAX_FORM_FIELDS = 1000
_MAX_ADDRESS_LEN = 256
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_MEDIA_URL = re.compile(r"MediaUrl(\d+)")
_UNWANTED = re.compile("[\x00\ud800-\udfff\ufffd]")

_MAPPED = frozenset(
    {
        "MessageSid",
        "AccountSid",
        "MessagingServiceSid",
        "From",
        "To",
        "Body",
        "NumMedia",
        "ProfileName",
        "ButtonText",
        "ButtonPayload",
    }
)
_LOCATION_FIELDS = ("Latitude", "Longitude", "Address", "Label")


def parse_form(raw_body: bytes) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body; the last of duplicate keys wins.

    Values are kept exactly as sent (NUL included) because the Twilio signature covers them;
    cleaning happens in parse_inbound. Invalid UTF-8 becomes U+FFFD, which parse_inbound removes.
    """
    text = raw_body.decode("utf-8", errors="replace")
    if text.count("&") >= _MAX_FORM_FIELDS:
        raise InvalidTwilioRequest("body", f"more than {_MAX_FORM_FIELDS} form fields")
    # What parse_qsl does, without its per-field bookkeeping: most Twilio values need no
    # unquoting at all, and this runs on every webhook (measured: half the cost of parse_qsl).
    out: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        out[name] = value
    return out


def clean_text(value: str) -> str:
    """Remove NUL, lone surrogates and U+FFFD (what is left of invalid UTF-8); nothing else changes."""
    if value.isascii():
        return value.replace("\x00", "") if "\x00" in value else value
    return _UNWANTED.sub("", value)


def classify_keyword(text: str) -> Keyword | None:
    """The keyword a message consists of (one word, any case, surrounding whitespace/punctuation ignored), or None."""
    if not text or len(text) > _KEYWORD_MAX_LEN:
        return None
    word = _trim_punctuation(unicodedata.normalize("NFKC", text))
    return _KEYWORDS.get(word.casefold())


def parse_inbound(params: Mapping[str, str], headers: Mapping[str, str] | None = None) -> InboundMessage:
    """Build an InboundMessage from a Twilio messaging webhook form; raise InvalidTwilioRequest if it is not one.

    `params` must be the decoded form (see parse_form); `headers` is looked up case-insensitively.
    """
    message_sid = _sid(params, "MessageSid")
    account_sid = _sid(params, "AccountSid")
    from_address = _address(params, "From")
    to_address = _address(params, "To")
    channel = _channel(from_address)
    if _channel(to_address) != channel:
        raise InvalidTwilioRequest("To", f"channel prefix differs from From ({channel})")

    text = clean_text(params.get("Body", "")).strip()
    mapped = set(_MAPPED)
    media = _media(params, mapped)
    location = _location(params)
    if location is not None:
        mapped.update(_LOCATION_FIELDS)
    button = _button(params)

    return InboundMessage(
        message_sid=message_sid,
        account_sid=account_sid,
        messaging_service_sid=_optional(params, "MessagingServiceSid"),
        channel=channel,
        from_address=from_address,
        to_address=to_address,
        customer_id=from_address.removeprefix(WHATSAPP_PREFIX),
        text=text,
        media=media,
        profile_name=_optional(params, "ProfileName"),
        location=location,
        button=button,
        raw={key: clean_text(value) for key, value in params.items() if key not in mapped},
        idempotency_token=_header(headers, IDEMPOTENCY_HEADER),
        keyword=classify_keyword(text),
    )


def parse_status(params: Mapping[str, str]) -> StatusUpdate:
    """Build a StatusUpdate from a Twilio message status callback form; raise InvalidTwilioRequest if it is not one."""
    sid_field = "MessageSid" if params.get("MessageSid") else "SmsSid"
    message_sid = _sid(params, sid_field)
    status = clean_text(params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not status:
        raise InvalidTwilioRequest("MessageStatus", "missing")
    try:
        known = DeliveryStatus(status)
    except ValueError:
        raise InvalidTwilioRequest("MessageStatus", f"not a status: {status[:40]!r}") from None
    to = _optional(params, "To")
    from_address = _optional(params, "From")
    error_code = _int_or_none(params.get("ErrorCode"))
    whatsapp = any(_channel(a) is Channel.whatsapp for a in (to, from_address) if a)
    channel = Channel.whatsapp if whatsapp else Channel.sms
    return StatusUpdate(
        message_sid=message_sid,
        status=known,
        error_code=error_code,
        opted_out=error_code == OPTED_OUT_CODE,
        error_message=_optional(params, "ErrorMessage"),
        channel=channel,
        to=to,
        from_address=from_address,
    )


def _trim_punctuation(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def _sid(params: Mapping[str, str], field: str) -> str:
    value = params.get(field)
    if not value:
        raise InvalidTwilioRequest(field, "missing")
    if not _SID.fullmatch(value):
        raise InvalidTwilioRequest(field, "not a Twilio SID (two letters and 32 hex digits)")
    return value


def _address(params: Mapping[str, str], field: str) -> str:
    value = params.get(field)
    if not value or not value.strip():
        raise InvalidTwilioRequest(field, "missing")
    prefix = ""
    if value[: len(WHATSAPP_PREFIX)].lower() == WHATSAPP_PREFIX:
        prefix, value = WHATSAPP_PREFIX, value[len(WHATSAPP_PREFIX) :]
    # A "+" sent without percent-encoding arrives as a space (curl -d, hand-made test requests).
    if value[:1] == " " and value[1:2].isdigit():
        value = "+" + value[1:]
    value = value.strip()
    if not value:
        raise InvalidTwilioRequest(field, "channel prefix without an address")
    if len(value) > _MAX_ADDRESS_LEN or not value.isprintable():
        raise InvalidTwilioRequest(field, "malformed address")
    return prefix + value


def _channel(address: str) -> Channel:
    return Channel.whatsapp if address.lower().startswith(WHATSAPP_PREFIX) else Channel.sms


def _optional(params: Mapping[str, str], field: str) -> str | None:
    value = clean_text(params.get(field, "")).strip()
    return value or None


def _media(params: Mapping[str, str], mapped: set[str]) -> list[Media]:
    # Read every MediaUrlN present rather than trusting NumMedia, so no URL is silently dropped.
    indexes = sorted(int(m.group(1)) for key in params if (m := _MEDIA_URL.fullmatch(key)))
    media = []
    for index in indexes:
        url_key, type_key = f"MediaUrl{index}", f"MediaContentType{index}"
        mapped.update((url_key, type_key))
        url = clean_text(params[url_key]).strip()
        if url:
            media.append(Media(url=url, content_type=_optional(params, type_key)))
    return media


def _location(params: Mapping[str, str]) -> dict[str, Any] | None:
    latitude, longitude = _float_or_none(params.get("Latitude")), _float_or_none(params.get("Longitude"))
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        return None
    return {
        "latitude": latitude,
        "longitude": longitude,
        "address": _optional(params, "Address"),
        "label": _optional(params, "Label"),
    }


def _button(params: Mapping[str, str]) -> dict[str, str | None] | None:
    text, payload = _optional(params, "ButtonText"), _optional(params, "ButtonPayload")
    if text is None and payload is None:
        return None
    return {"text": text, "payload": payload}


def _float_or_none(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None:
        return None
    return value.strip() or None
