from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from channels.models import OutboundMessage
from channels.twilio import PermanentDeliveryError, RetryableDeliveryError, TwilioSender
from tests.channels.twilio.wire import (
    ACCOUNT_SID,
    API_BASE,
    AUTH_TOKEN,
    MESSAGES_PATH,
    created,
    error_body,
    form_fields,
    sid,
    single_fields,
)

CALLBACK = "https://gw.example.com/twilio/messages/status"
CUSTOMER = "+15557654321"
NUMBER = "+15550001111"
SERVICE = "MG" + "c" * 32
LONG_TEXT = " ".join(f"Sentence number {i} explains one more step of the refund process." for i in range(60))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture
def sender(http: httpx.Client) -> TwilioSender:
    return TwilioSender(ACCOUNT_SID, AUTH_TOKEN, http)


@pytest.fixture
def twilio() -> Iterator[respx.MockRouter]:
    # assert_all_called is off: some tests check that Twilio was *not* called.
    with respx.mock(base_url=API_BASE, assert_all_called=False) as router:
        yield router


def outbound(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {"channel": "sms", "to": CUSTOMER, "from_": NUMBER, "status_callback": CALLBACK}
    values.update(fields)
    return OutboundMessage.model_validate(values)


def test_single_part_sends_exactly_the_twilio_fields(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    message_sid = sid()
    route = twilio.post(MESSAGES_PATH).mock(side_effect=lambda request: created(request, message_sid))
    receipt = sender.send(outbound(text="Your order ships tomorrow."))
    assert single_fields(route.calls.last.request) == {
        "To": CUSTOMER,
        "From": NUMBER,
        "Body": "Your order ships tomorrow.",
        "StatusCallback": CALLBACK,
    }
    assert route.calls.last.request.headers["Authorization"].startswith("Basic ")
    assert (receipt.channel_message_ids, receipt.parts, receipt.status) == ([message_sid], 1, "queued")


def test_messaging_service_is_sent_instead_of_from(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    route = twilio.post(MESSAGES_PATH).mock(side_effect=lambda request: created(request, status="accepted"))
    receipt = sender.send(outbound(from_=None, messaging_service_sid=SERVICE, text="Hi"))
    assert single_fields(route.calls.last.request) == {
        "To": CUSTOMER,
        "MessagingServiceSid": SERVICE,
        "Body": "Hi",
        "StatusCallback": CALLBACK,
    }
    assert receipt.status == "accepted"


@pytest.mark.parametrize(
    ("to", "from_"),
    [(CUSTOMER, NUMBER), ("whatsapp:" + CUSTOMER, "whatsapp:" + NUMBER), (CUSTOMER, "whatsapp:" + NUMBER)],
)
def test_whatsapp_addresses_carry_the_prefix_exactly_once(
    sender: TwilioSender, twilio: respx.MockRouter, to: str, from_: str
) -> None:
    route = twilio.post(MESSAGES_PATH).mock(side_effect=created)
    sender.send(outbound(channel="whatsapp", to=to, from_=from_, text="Hola"))
    fields = single_fields(route.calls.last.request)
    assert (fields["To"], fields["From"]) == ("whatsapp:" + CUSTOMER, "whatsapp:" + NUMBER)


def test_whatsapp_customer_id_that_is_not_a_phone_number_is_addressed_as_is(
    sender: TwilioSender, twilio: respx.MockRouter
) -> None:
    route = twilio.post(MESSAGES_PATH).mock(side_effect=created)
    sender.send(outbound(channel="whatsapp", to="US.1a2b3c4d5e6f7a8b", text="Hola"))
    assert single_fields(route.calls.last.request)["To"] == "whatsapp:US.1a2b3c4d5e6f7a8b"


def test_long_text_is_sent_as_numbered_parts_in_order_with_media_on_the_first(
    sender: TwilioSender, twilio: respx.MockRouter
) -> None:
    sids = [sid(), sid(), sid()]
    route = twilio.post(MESSAGES_PATH).mock(side_effect=[lambda r, s=s: created(r, s) for s in sids])
    receipt = sender.send(outbound(text=LONG_TEXT[:4000], media_urls=["https://cdn.example.com/a.png"]))
    sent = [form_fields(call.request) for call in route.calls]
    assert [fields["Body"][0][:6] for fields in sent] == ["(1/3) ", "(2/3) ", "(3/3) "]
    assert all(len(fields["Body"][0]) <= 1600 for fields in sent)
    assert [fields.get("MediaUrl") for fields in sent] == [["https://cdn.example.com/a.png"], None, None]
    assert all(fields["StatusCallback"] == [CALLBACK] for fields in sent)
    assert (receipt.channel_message_ids, receipt.parts) == (sids, 3)


def test_failure_on_part_two_is_retryable_and_the_retry_sends_only_the_rest(
    sender: TwilioSender, twilio: respx.MockRouter
) -> None:
    first, second, third = sid(), sid(), sid()
    route = twilio.post(MESSAGES_PATH).mock(
        side_effect=[
            lambda r: created(r, first),
            httpx.Response(500, json=error_body(20500, "Internal Server Error", 500)),
        ]
    )
    message = outbound(text=LONG_TEXT[:4000])
    with pytest.raises(RetryableDeliveryError) as caught:
        sender.send(message)
    assert caught.value.sent_parts == {0: first}
    assert (caught.value.status_code, caught.value.code) == (500, 20500)

    route.side_effect = [lambda r: created(r, second), lambda r: created(r, third)]
    before = route.call_count
    receipt = sender.send(message.model_copy(update={"sent_parts": caught.value.sent_parts}))
    retried = [form_fields(call.request)["Body"][0][:6] for call in route.calls[before:]]
    assert retried == ["(2/3) ", "(3/3) "]
    assert (receipt.channel_message_ids, receipt.parts) == ([first, second, third], 3)


def test_retry_with_every_part_sent_makes_no_request(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    route = twilio.post(MESSAGES_PATH)
    receipt = sender.send(outbound(text="Hi", sent_parts={0: "SM" + "0" * 32}))
    assert not route.called
    assert receipt.channel_message_ids == ["SM" + "0" * 32]


def test_rate_limit_is_retryable_with_retry_after(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    twilio.post(MESSAGES_PATH).respond(
        429, json=error_body(20429, "Too Many Requests", 429), headers={"Retry-After": "7"}
    )
    with pytest.raises(RetryableDeliveryError) as caught:
        sender.send(outbound(text="Hi"))
    assert (caught.value.retry_after, caught.value.code, caught.value.sent_parts) == (7.0, 20429, {})


def test_retry_after_as_http_date_is_converted_to_seconds(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    twilio.post(MESSAGES_PATH).respond(503, text="<html>Service Unavailable</html>", headers=headers)
    with pytest.raises(RetryableDeliveryError) as caught:
        sender.send(outbound(text="Hi"))
    assert caught.value.retry_after == 0.0
    assert (caught.value.status_code, caught.value.code) == (503, None)


def test_unsubscribed_recipient_is_permanent(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    body = error_body(21610, "Attempt to send to unsubscribed recipient", 400)
    twilio.post(MESSAGES_PATH).respond(400, json=body)
    with pytest.raises(PermanentDeliveryError) as caught:
        sender.send(outbound(text="Hi"))
    assert (caught.value.code, caught.value.status_code) == (21610, 400)
    assert caught.value.message == "Attempt to send to unsubscribed recipient"
    assert caught.value.sent_parts == {}


def test_outside_whatsapp_window_is_permanent_and_keeps_earlier_parts(
    sender: TwilioSender, twilio: respx.MockRouter
) -> None:
    first = sid()
    body = error_body(63016, "Failed to send freeform message because you are outside the allowed window.", 400)
    twilio.post(MESSAGES_PATH).mock(side_effect=[lambda r: created(r, first), httpx.Response(400, json=body)])
    with pytest.raises(PermanentDeliveryError) as caught:
        sender.send(outbound(channel="whatsapp", text=LONG_TEXT[:4000]))
    assert (caught.value.code, caught.value.sent_parts) == (63016, {0: first})


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_network_failures_are_retryable_and_chained(
    sender: TwilioSender, twilio: respx.MockRouter, error: httpx.HTTPError
) -> None:
    twilio.post(MESSAGES_PATH).mock(side_effect=error)
    with pytest.raises(RetryableDeliveryError) as caught:
        sender.send(outbound(text="Hi"))
    assert caught.value.__cause__ is error


def test_template_sends_content_sid_and_variables_without_body(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    route = twilio.post(MESSAGES_PATH).mock(side_effect=created)
    content_sid = "HX" + "d" * 32
    receipt = sender.send(
        outbound(
            channel="whatsapp",
            text="ignored for templates",
            content_sid=content_sid,
            content_variables={"1": "Ada", "2": "12:30"},
        )
    )
    fields = single_fields(route.calls.last.request)
    assert fields == {
        "To": "whatsapp:" + CUSTOMER,
        "From": "whatsapp:" + NUMBER,
        "StatusCallback": CALLBACK,
        "ContentSid": content_sid,
        "ContentVariables": '{"1":"Ada","2":"12:30"}',
    }
    assert json.loads(fields["ContentVariables"]) == {"1": "Ada", "2": "12:30"}
    assert receipt.parts == 1


def test_media_only_message_sends_media_without_body(sender: TwilioSender, twilio: respx.MockRouter) -> None:
    route = twilio.post(MESSAGES_PATH).mock(side_effect=created)
    sender.send(outbound(media_urls=["https://cdn.example.com/a.png", "https://cdn.example.com/b.pdf"]))
    assert form_fields(route.calls.last.request) == {
        "To": [CUSTOMER],
        "From": [NUMBER],
        "StatusCallback": [CALLBACK],
        "MediaUrl": ["https://cdn.example.com/a.png", "https://cdn.example.com/b.pdf"],
    }


def test_api_base_url_sends_everything_to_the_mock_host(http: httpx.Client) -> None:
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, http, api_base_url="http://127.0.0.1:9999")
    with respx.mock(base_url="http://127.0.0.1:9999") as mock:
        route = mock.post(MESSAGES_PATH).mock(side_effect=created)
        receipt = sender.send(outbound(text="Hi"))
    assert route.calls.last.request.url == f"http://127.0.0.1:9999{MESSAGES_PATH}"
    assert receipt.parts == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"from_": None},
        {"channel": "sms", "to": "whatsapp:" + CUSTOMER},
        {"channel": "api"},
        {"text": "   "},
    ],
)
def test_unsendable_message_is_permanent_without_calling_twilio(
    sender: TwilioSender, twilio: respx.MockRouter, fields: dict[str, object]
) -> None:
    route = twilio.post(MESSAGES_PATH)
    with pytest.raises(PermanentDeliveryError):
        sender.send(outbound(**{"text": "Hi", **fields}))
    assert not route.called
