"""Twilio's errors: webhook requests that are not Twilio's, and the one rule that says which
REST failures are worth retrying (sending raises the channel-neutral tree of channels.models)."""

from __future__ import annotations

from channels.models import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

# Twilio error codes that no retry can fix (https://www.twilio.com/docs/api/errors).
PERMANENT_TWILIO_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21408,  # permission to send to this region not enabled
        21610,  # recipient replied STOP: attempt to send to an unsubscribed recipient
        21612,  # 'To' is not reachable from this 'From' / not currently reachable via SMS
        21614,  # 'To' is not a valid mobile number
        63016,  # WhatsApp: free-form message outside the 24-hour customer service window
    }
)
# Twilio's own "too many requests" code; it can arrive with a 400-range status.
RETRYABLE_TWILIO_CODES = frozenset({20429})
# The recipient replied STOP: the customer is opted out until they send START.
OPTED_OUT_CODE = 21610

__all__ = [
    "OPTED_OUT_CODE",
    "ChannelError",
    "DeliveryError",
    "InvalidTwilioRequest",
    "PermanentDeliveryError",
    "RetryableDeliveryError",
    "is_retryable",
]


class ChannelError(Exception):
    """Base of the errors channels.twilio raises about requests it receives."""


class InvalidTwilioRequest(ChannelError):
    """A webhook request that is not a well-formed Twilio request: `field` names the offending parameter."""

    def __init__(self, field: str, reason: str) -> None:
        # Both go to args so the exception pickles and unpickles intact.
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def is_retryable(status_code: int, twilio_code: int | None) -> bool:
    """Whether a Twilio REST failure is worth retrying: 408, 429, Twilio 20429 and 5xx are; the rest are not.

    A known-permanent Twilio code wins over the HTTP status. Network errors and timeouts never reach
    this function (there is no status); the sender treats them as retryable directly.
    """
    if twilio_code in PERMANENT_TWILIO_CODES:
        return False
    if twilio_code in RETRYABLE_TWILIO_CODES:
        return True
    return status_code in (408, 429) or status_code >= 500
