"""Twilio SMS/WhatsApp: parse webhooks, verify signatures, send messages, answer with TwiML.

The REST side (`TwilioSender`, `TwilioHttpxClient`) is imported on first use: the SDK's
REST client pulls in aiohttp and requests, which the web process never needs.
"""

from typing import Any

from channels.twilio.errors import (
    OPTED_OUT_CODE,
    ChannelError,
    DeliveryError,
    InvalidTwilioRequest,
    PermanentDeliveryError,
    RetryableDeliveryError,
    is_retryable,
)
from channels.twilio.parse import (
    IDEMPOTENCY_HEADER,
    WHATSAPP_PREFIX,
    classify_keyword,
    clean_text,
    parse_form,
    parse_inbound,
    parse_status,
)
from channels.twilio.signatures import SIGNATURE_HEADER, verify, webhook_url
from channels.twilio.split import BODY_LIMIT, message_parts, part_count, split_message
from channels.twilio.twiml import CONTENT_TYPE, EMPTY_RESPONSE

__all__ = [
    "BODY_LIMIT",
    "CONTENT_TYPE",
    "DEFAULT_API_BASE_URL",
    "EMPTY_RESPONSE",
    "IDEMPOTENCY_HEADER",
    "OPTED_OUT_CODE",
    "SIGNATURE_HEADER",
    "WHATSAPP_PREFIX",
    "ChannelError",
    "DeliveryError",
    "DevOutboxSender",
    "InvalidTwilioRequest",
    "PermanentDeliveryError",
    "RetryableDeliveryError",
    "TwilioHttpxClient",
    "TwilioSender",
    "classify_keyword",
    "clean_text",
    "is_retryable",
    "message_parts",
    "parse_form",
    "parse_inbound",
    "parse_status",
    "part_count",
    "split_message",
    "verify",
    "webhook_url",
]


DEFAULT_API_BASE_URL = "https://api.twilio.com"


def __getattr__(name: str) -> Any:
    if name == "TwilioSender":
        from channels.twilio.sender import TwilioSender

        return TwilioSender
    if name == "TwilioHttpxClient":
        from channels.twilio.http_client import TwilioHttpxClient

        return TwilioHttpxClient
    if name == "DevOutboxSender":
        from channels.twilio.dev import DevOutboxSender

        return DevOutboxSender
    raise AttributeError(name)
