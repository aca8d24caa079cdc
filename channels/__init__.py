"""Everything channel-shaped (Twilio): parsing, signatures, sending, TwiML."""

from channels.models import (
    Channel,
    InboundMessage,
    Keyword,
    MediaItem,
    OutboundMessage,
    Sender,
    SendReceipt,
    StatusUpdate,
)

__all__ = [
    "Channel",
    "InboundMessage",
    "Keyword",
    "MediaItem",
    "OutboundMessage",
    "SendReceipt",
    "Sender",
    "StatusUpdate",
]
