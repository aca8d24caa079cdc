"""Everything channel-shaped (Twilio): parsing, signatures, sending, TwiML."""

from channels.models import MediaItem, OutboundMessage, Sender, SendReceipt

__all__ = ["MediaItem", "OutboundMessage", "SendReceipt", "Sender"]
