"""Channel-neutral message models: what comes in from and goes out to a channel."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class MediaItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None


class OutboundMessage(BaseModel):
    """One message to deliver to a customer (split into parts by the sender if needed)."""

    model_config = ConfigDict(frozen=True)

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
