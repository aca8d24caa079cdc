"""The dev outbox: the messaging Sender used without Twilio credentials. It records what
Twilio would have been asked to send (split as Twilio's sender splits it), sends nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from channels.models import CallReceipt, CallStatus, DeliveryStatus, OutboundCall, OutboundMessage, SendReceipt
from channels.twilio.split import message_parts, part_count

NOT_SENT = "dev outbox: Twilio is not configured, nothing was sent"


class DevOutboxSender:
    """`record` keeps each entry (the store's dev outbox); receipts carry made-up SM… ids."""

    parts = staticmethod(part_count)

    def __init__(self, record: Callable[[dict[str, Any]], None], now: Callable[[], str]) -> None:
        self.record = record
        self.now = now

    def send(self, message: OutboundMessage) -> SendReceipt:
        parts = message_parts(message)
        count = part_count(message)
        sids = ["SMdev" + uuid.uuid4().hex[:27] for _ in range(count)]
        self.record(
            {
                "not_sent": NOT_SENT,
                "channel": message.channel.value,
                "to": message.to,
                "from": message.from_ or message.messaging_service_sid,
                "text": message.text,
                "parts": parts or [message.text],
                "media_urls": message.media_urls,
                "content_sid": message.content_sid,
                "content_variables": message.content_variables,
                "sids": sids,
                "created_at": self.now(),
            }
        )
        return SendReceipt(channel_message_ids=sids, parts=count, status=DeliveryStatus.dev_outbox)


CALL_NOT_PLACED = "dev outbox: Twilio is not configured, the call was not placed; answer it with `chatgw call`"


class DevCallPlacer:
    """The CallPlacer used without Twilio credentials: records the call it would place (with
    a made-up CA… sid) for `chatgw call` to play."""

    def __init__(self, record: Callable[[dict[str, Any]], None], now: Callable[[], str]) -> None:
        self.record = record
        self.now = now

    def place(self, call: OutboundCall) -> CallReceipt:
        sid = "CA" + uuid.uuid4().hex
        self.record(
            {
                "kind": "call",
                "not_sent": CALL_NOT_PLACED,
                "to": call.to,
                "from": call.from_number,
                "url": call.url,
                "status_callback": call.status_callback,
                "time_limit_s": call.time_limit_s,
                "sids": [sid],
                "parts": [],
                "created_at": self.now(),
            }
        )
        return CallReceipt(call_sid=sid, status=CallStatus.queued, placed=False)
