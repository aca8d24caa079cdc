from __future__ import annotations

import pickle

import pytest

from channels.twilio import (
    DeliveryError,
    InvalidTwilioRequest,
    PermanentDeliveryError,
    RetryableDeliveryError,
    is_retryable,
)


@pytest.mark.parametrize(
    ("status_code", "twilio_code", "retryable"),
    [
        (429, 20429, True),
        (429, None, True),
        (400, 20429, True),
        (500, None, True),
        (500, 20500, True),
        (502, None, True),
        (503, 20503, True),
        (408, None, True),
        (400, 21610, False),
        (400, 21211, False),
        (400, 63016, False),
        (400, 21408, False),
        (400, 21612, False),
        (400, 21614, False),
        (500, 21610, False),
        (401, 20003, False),
        (404, 20404, False),
        (400, None, False),
        (422, None, False),
    ],
)
def test_retry_rule(status_code: int, twilio_code: int | None, retryable: bool) -> None:
    assert is_retryable(status_code, twilio_code) is retryable


def test_delivery_errors_share_one_base_and_keep_sent_parts() -> None:
    retryable = RetryableDeliveryError("slow down", sent_parts={0: "SM1"}, status_code=429, retry_after=3.0)
    permanent = PermanentDeliveryError("unsubscribed", code=21610, status_code=400)
    assert isinstance(retryable, DeliveryError) and isinstance(permanent, DeliveryError)
    assert retryable.sent_parts == {0: "SM1"} and retryable.retry_after == 3.0
    assert permanent.sent_parts == {} and permanent.code == 21610
    assert str(permanent) == "unsubscribed"


def test_errors_survive_pickling_with_their_details() -> None:
    original = RetryableDeliveryError("boom", sent_parts={0: "SM1"}, status_code=503, code=20503, retry_after=2.5)
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.message, copy.sent_parts, copy.status_code, copy.code, copy.retry_after) == (
        "boom",
        {0: "SM1"},
        503,
        20503,
        2.5,
    )
    invalid = pickle.loads(pickle.dumps(InvalidTwilioRequest("From", "missing")))
    assert (invalid.field, invalid.reason, str(invalid)) == ("From", "missing", "From: missing")
