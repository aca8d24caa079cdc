"""Deliver OutboundMessages through Twilio's Messages API with the official SDK, part by part."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.rest import Client

from channels.models import (
    Channel,
    DeliveryError,
    DeliveryStatus,
    OutboundMessage,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SendReceipt,
)
from channels.twilio import DEFAULT_API_BASE_URL
from channels.twilio.errors import OPTED_OUT_CODE, is_retryable
from channels.twilio.http_client import TwilioHttpxClient
from channels.twilio.parse import WHATSAPP_PREFIX
from channels.twilio.split import message_parts, part_count


class TwilioSender:
    """A Sender for the "sms" and "whatsapp" channels; every request goes through `http_client`."""

    parts = staticmethod(part_count)

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        http_client: httpx.Client,
        api_base_url: str = DEFAULT_API_BASE_URL,
    ) -> None:
        self._http = TwilioHttpxClient(http_client, api_base_url)
        self._client = Client(account_sid, auth_token, http_client=self._http)

    def send(self, message: OutboundMessage) -> SendReceipt:
        """Send every part not already in `message.sent_parts`, in order; raise a DeliveryError on the first failure.

        The error's `sent_parts` includes the parts accepted before it, so a retry with them sends only the rest.
        """
        sent = dict(message.sent_parts)
        try:
            requests = _requests(message)
        except PermanentDeliveryError as exc:
            exc.sent_parts = sent
            raise
        status = DeliveryStatus.queued
        for index, fields in enumerate(requests):
            if index in sent:
                continue
            try:
                created = self._client.messages.create(**fields)
            except (TwilioException, httpx.HTTPError, json.JSONDecodeError) as exc:
                raise self._translate(exc, sent) from exc
            if not created.sid:
                raise RetryableDeliveryError("Twilio answered without a message SID", sent_parts=sent)
            sent[index] = created.sid
            status = _status(created.status, status)
        return SendReceipt(
            channel_message_ids=[sent[index] for index in range(len(requests))],
            parts=len(requests),
            status=status,
        )

    def _translate(self, exc: Exception, sent: dict[int, str]) -> DeliveryError:
        if isinstance(exc, TwilioRestException | TwilioServiceException):
            response = self._http.last_response
            status_code = int(exc.status)
            # Without a JSON error body the SDK reports the HTTP status as the code; that is no Twilio code.
            code = exc.code if isinstance(exc.code, int) and exc.code != status_code else None
            text = _error_message(response.text if response else "") or _exception_message(exc)
            if is_retryable(status_code, code):
                return RetryableDeliveryError(
                    text,
                    sent_parts=sent,
                    status_code=status_code,
                    code=code,
                    retry_after=_retry_after(response.headers if response else None),
                )
            return PermanentDeliveryError(
                text, sent_parts=sent, status_code=status_code, code=code, opted_out=code == OPTED_OUT_CODE
            )
        if isinstance(exc, httpx.HTTPError | json.JSONDecodeError):
            # The request may or may not have reached Twilio; resending risks a duplicate part, not sending loses it.
            return RetryableDeliveryError(f"Twilio request failed: {type(exc).__name__}: {exc}", sent_parts=sent)
        return PermanentDeliveryError(f"Twilio client error: {exc}", sent_parts=sent)


def _requests(message: OutboundMessage) -> list[dict[str, Any]]:
    """The Messages.create arguments for each part, in part order."""
    common: dict[str, Any] = {"to": _channel_address(message.channel, message.to, "to")}
    if message.from_:
        common["from_"] = _channel_address(message.channel, message.from_, "from")
    if message.messaging_service_sid:
        common["messaging_service_sid"] = message.messaging_service_sid
    if "from_" not in common and "messaging_service_sid" not in common:
        raise PermanentDeliveryError("message has neither a from address nor a messaging_service_sid")
    if message.status_callback:
        common["status_callback"] = message.status_callback

    if message.content_sid:
        template = {**common, "content_sid": message.content_sid}
        if message.content_variables is not None:
            template["content_variables"] = json.dumps(message.content_variables, separators=(",", ":"))
        return [template]

    bodies = message_parts(message)
    if not bodies and not message.media_urls:
        raise PermanentDeliveryError("message has no text, media or template")
    requests = [{**common, "body": body} for body in bodies] or [dict(common)]
    if message.media_urls:
        requests[0]["media_url"] = list(message.media_urls)
    return requests


def _status(value: object, default: DeliveryStatus) -> DeliveryStatus:
    try:
        return DeliveryStatus(str(value)) if value else default
    except ValueError:
        return default


def _channel_address(channel: Channel, address: str, field: str) -> str:
    has_prefix = address.lower().startswith(WHATSAPP_PREFIX)
    if channel is Channel.whatsapp:
        return address if has_prefix else WHATSAPP_PREFIX + address
    if channel is Channel.sms:
        if has_prefix:
            raise PermanentDeliveryError(f"{field} address {address!r} is a WhatsApp address on an sms message")
        return address
    raise PermanentDeliveryError(f"channel {channel!r} is not sent through Twilio messaging")


def _error_message(body: str) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    text = payload.get("message") or payload.get("detail") or payload.get("title")
    return str(text) if text else None


def _exception_message(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioRestException):
        return str(exc.msg)
    return str(exc.detail or exc.title)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
