"""Channel-neutral message models: what comes in from and goes out to a channel."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["sms", "whatsapp"]


class Keyword(StrEnum):
    """A carrier-level keyword a customer sent instead of a message (Twilio's opt-out handling)."""

    OPTOUT = "optout"
    OPTIN = "optin"
    HELP = "help"


class MediaItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None


class InboundMessage(BaseModel):
    """One message a customer sent, normalized: no Twilio field names, text cleaned, prefixes split off."""

    model_config = ConfigDict(frozen=True)

    message_sid: str
    account_sid: str
    messaging_service_sid: str | None = None
    channel: Channel
    from_address: str
    to_address: str
    customer_id: str
    text: str = ""
    media: list[MediaItem] = Field(default_factory=list)
    profile_name: str | None = None
    location: dict[str, Any] | None = None
    button: dict[str, str | None] | None = None
    raw: dict[str, str] = Field(default_factory=dict)
    idempotency_token: str | None = None
    keyword: Keyword | None = None

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to answer: no text, media, location or button reply."""
        return not self.text and not self.media and self.location is None and self.button is None


class StatusUpdate(BaseModel):
    """One delivery status callback for a message we sent."""

    model_config = ConfigDict(frozen=True)

    message_sid: str
    status: str
    error_code: int | None = None
    error_message: str | None = None
    channel: Channel
    to: str | None = None
    from_address: str | None = None


class OutboundMessage(BaseModel):
    """One message to deliver to a customer (split into parts by the sender if needed)."""

    # populate_by_name lets Python callers write from_=... as well as the wire alias "from".
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    channel: str
    to: str
    from_: str | None = Field(default=None, alias="from")
    messaging_service_sid: str | None = None
    text: str = ""
    media_urls: list[str] = Field(default_factory=list)
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    status_callback: str | None = None
    # Parts already accepted by the provider on an earlier attempt are not sent again.
    sent_parts: dict[int, str] = Field(default_factory=dict)


class SendReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel_message_ids: list[str]
    parts: int
    status: str = "queued"


class Sender(Protocol):
    def send(self, message: OutboundMessage) -> SendReceipt: ...
