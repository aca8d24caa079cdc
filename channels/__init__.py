"""Everything channel-shaped: the channel-neutral models (`channels.models`) and Twilio
(`channels.twilio`: parsing, signatures, sending, TwiML)."""

from channels.models import (
    CAPABILITIES,
    Capabilities,
    Channel,
    DeliveryError,
    DeliveryStatus,
    InboundMessage,
    Keyword,
    Media,
    OutboundMessage,
    PermanentDeliveryError,
    RetryableDeliveryError,
    Sender,
    Senders,
    SendReceipt,
    StatusUpdate,
    is_newer,
)

__all__ = [
    "CAPABILITIES",
    "Capabilities",
    "Channel",
    "DeliveryError",
    "DeliveryStatus",
    "InboundMessage",
    "Keyword",
    "Media",
    "OutboundMessage",
    "PermanentDeliveryError",
    "RetryableDeliveryError",
    "SendReceipt",
    "Sender",
    "Senders",
    "StatusUpdate",
    "is_newer",
]
