"""One exception tree for the Twilio boundary, and the one rule that says what is worth retrying."""

from __future__ import annotations

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


class ChannelError(Exception):
    """Base of every error raised by channels.twilio."""


class InvalidTwilioRequest(ChannelError):
    """A webhook request that is not a well-formed Twilio request: `field` names the offending parameter."""

    def __init__(self, field: str, reason: str) -> None:
        # Both go to args so the exception pickles and unpickles intact.
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class DeliveryError(ChannelError):
    """Sending failed; `sent_parts` maps part index -> Twilio SID for parts Twilio accepted before the failure."""

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
    """A transient failure (429, 5xx, network, timeout); retry after `retry_after` seconds when Twilio said so."""

    def __init__(
        self,
        message: str,
        *,
        sent_parts: dict[int, str] | None = None,
        status_code: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, sent_parts=sent_parts, status_code=status_code, code=code)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """A failure no retry can fix (opted out, invalid number, outside the WhatsApp window, other 4xx)."""


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
