"""Channel-neutral models: what comes in from and goes out to a channel, what a channel can
carry, and the one error tree every sender raises. The domain (`agent_core`) sees channels
only through this module; Twilio's shapes stay in `channels.twilio`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    """The channel a session (and each of its messages) uses."""

    sms = "sms"
    whatsapp = "whatsapp"
    api = "api"
    web = "web"

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES[self]

    @property
    def delivered(self) -> bool:
        """Whether messages to the customer go out through a Sender (else the client reads them)."""
        return CAPABILITIES[self].delivered


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel carries: `max_length` characters per provider message (longer text is
    split by the sender); free text only within `session_window_s` of the customer's last
    message (WhatsApp's customer service window), templates any time."""

    delivered: bool
    max_length: int = 0
    session_window_s: int | None = None
    label: str = ""


CAPABILITIES: dict[Channel, Capabilities] = {
    Channel.sms: Capabilities(delivered=True, max_length=1600),
    Channel.whatsapp: Capabilities(delivered=True, max_length=1600, session_window_s=24 * 3600, label="WhatsApp"),
    Channel.api: Capabilities(delivered=False),
    # The web chat widget reads replies from its stream and the widget API, like the Chat API.
    Channel.web: Capabilities(delivered=False, label="web chat"),
}


class Keyword(StrEnum):
    """A carrier-level keyword a customer sent instead of a message (Twilio's opt-out handling)."""

    OPTOUT = "optout"
    OPTIN = "optin"
    HELP = "help"


class Media(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None


class DeliveryStatus(StrEnum):
    """Where an outbound message is: ours (`pending` until handed to a sender, `dropped`,
    `dev_outbox`) and the providers' (Twilio's message statuses)."""

    pending = "pending"
    dropped = "dropped"
    dev_outbox = "dev_outbox"
    accepted = "accepted"
    scheduled = "scheduled"
    queued = "queued"
    sending = "sending"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    canceled = "canceled"
    partially_delivered = "partially_delivered"
    read = "read"
    receiving = "receiving"
    received = "received"

    @classmethod
    def _missing_(cls, value: object) -> DeliveryStatus | None:
        # A status a provider added after this was written is kept (ranked 0, below every
        # known one), not refused: a refused callback would be retried forever.
        if isinstance(value, str) and 0 < len(value) <= 40 and value.replace("_", "").isalpha() and value.islower():
            member = str.__new__(cls, value)
            member._name_ = value
            member._value_ = value
            return member
        return None

    @property
    def rank(self) -> int:
        """Position in the lifecycle; ours and unknown ones rank 0, below every provider status."""
        return _RANK.get(self, 0)

    @property
    def failure(self) -> bool:
        return self in (DeliveryStatus.failed, DeliveryStatus.undelivered)


# Status callbacks may arrive out of order. Equal ranks never replace each other, so the
# first terminal status (delivered/undelivered/failed/canceled) sticks; only WhatsApp's
# "read" comes after it.
_RANK = {
    DeliveryStatus.accepted: 1,
    DeliveryStatus.scheduled: 1,
    DeliveryStatus.queued: 2,
    DeliveryStatus.sending: 3,
    DeliveryStatus.sent: 4,
    DeliveryStatus.delivered: 5,
    DeliveryStatus.undelivered: 5,
    DeliveryStatus.failed: 5,
    DeliveryStatus.canceled: 5,
    DeliveryStatus.partially_delivered: 5,
    DeliveryStatus.read: 6,
}


def is_newer(old: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """Whether `new` should replace the recorded status `old`: only a strictly higher rank does."""
    return old is None or new.rank > old.rank


class InboundMessage(BaseModel):
    """One message a customer sent, normalized: no provider field names, text cleaned, prefixes split off."""

    model_config = ConfigDict(frozen=True)

    message_sid: str
    account_sid: str
    messaging_service_sid: str | None = None
    channel: Channel
    from_address: str
    to_address: str
    customer_id: str
    text: str = ""
    media: list[Media] = Field(default_factory=list)
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
    status: DeliveryStatus
    error_code: int | None = None
    error_message: str | None = None
    # The provider refused because the customer unsubscribed (STOP).
    opted_out: bool = False
    channel: Channel
    to: str | None = None
    from_address: str | None = None


class OutboundMessage(BaseModel):
    """One message to deliver to a customer (split into parts by the sender if needed)."""

    # populate_by_name lets Python callers write from_=... as well as the wire alias "from".
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    channel: Channel
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
    status: DeliveryStatus = DeliveryStatus.queued


class DeliveryError(Exception):
    """Sending failed; `sent_parts` maps part index -> provider id for parts the provider
    accepted before the failure (a retry sends only the rest)."""

    def __init__(
        self,
        message: str,
        *,
        sent_parts: dict[int, str] | None = None,
        status_code: int | None = None,
        code: int | None = None,
    ) -> None:
        # Only `message` goes to args: pickling rebuilds with cls(*args) and restores the rest from __dict__.
        super().__init__(message)
        self.message = message
        self.sent_parts: dict[int, str] = dict(sent_parts or {})
        self.status_code = status_code
        self.code = code


class RetryableDeliveryError(DeliveryError):
    """A transient failure (rate limit, 5xx, network, timeout); retry after `retry_after`
    seconds when the provider said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """A failure no retry can fix (invalid number, outside the WhatsApp window, other 4xx);
    `opted_out` when the provider refuses because the customer unsubscribed (STOP)."""

    def __init__(self, message: str, *, opted_out: bool = False, **details: Any) -> None:
        super().__init__(message, **details)
        self.opted_out = opted_out


class Sender(Protocol):
    """Delivers to customers on one or more channels (the registry maps each channel to one)."""

    def parts(self, message: OutboundMessage) -> int:
        """How many provider messages `message` becomes (what the rate limit counts)."""
        ...

    def send(self, message: OutboundMessage) -> SendReceipt:
        """Send every part not in `message.sent_parts`, in order; raise a DeliveryError."""
        ...


Senders = dict[Channel, Sender]


class CallStatus(StrEnum):
    """A phone call's status (Twilio's Call resource values, channel-neutral here)."""

    queued = "queued"
    ringing = "ringing"
    in_progress = "in-progress"
    completed = "completed"
    busy = "busy"
    no_answer = "no-answer"
    failed = "failed"
    canceled = "canceled"

    @property
    def rank(self) -> int:
        """Order of progress: callbacks arrive out of order and never move a call backwards."""
        return _CALL_RANK[self]

    @property
    def terminal(self) -> bool:
        return _CALL_RANK[self] >= _CALL_RANK[CallStatus.completed]

    @property
    def connected(self) -> bool:
        return self is CallStatus.completed


_CALL_RANK = {
    CallStatus.queued: 0,
    CallStatus.ringing: 1,
    CallStatus.in_progress: 2,
    CallStatus.completed: 3,
    CallStatus.busy: 3,
    CallStatus.no_answer: 3,
    CallStatus.failed: 3,
    CallStatus.canceled: 3,
}


class OutboundCall(BaseModel):
    """A call to place: who to call, from which number, where the provider fetches the call's
    instructions (`url`) and reports progress (`status_callback`), and the longest it may last."""

    model_config = ConfigDict(frozen=True)

    to: str
    from_number: str
    url: str
    status_callback: str
    time_limit_s: int


class CallReceipt(BaseModel):
    """What the provider answered when it accepted the call; `placed` False for the dev outbox."""

    model_config = ConfigDict(frozen=True)

    call_sid: str
    status: CallStatus = CallStatus.queued
    placed: bool = True


class CallStatusUpdate(BaseModel):
    """One call progress callback."""

    model_config = ConfigDict(frozen=True)

    call_sid: str
    status: CallStatus
    duration_s: int | None = None
    sequence: int | None = None


class CallerTurn(BaseModel):
    """What the caller did on a voice webhook: said something (`speech`), pressed keys, or
    nothing (silence)."""

    model_config = ConfigDict(frozen=True)

    call_sid: str
    speech: str = ""
    digits: str = ""
    confidence: float | None = None

    @property
    def silent(self) -> bool:
        return not self.speech.strip() and not self.digits


class CallPlacer(Protocol):
    """Places outbound calls (Twilio's Calls API, or the dev outbox)."""

    def place(self, call: OutboundCall) -> CallReceipt:
        """Place one call; raise RetryableDeliveryError only when no call can have been created."""
        ...
