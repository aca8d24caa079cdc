from __future__ import annotations

import urllib.parse

import pytest

from channels.models import DeliveryStatus, Keyword, Media, is_newer
from channels.twilio import (
    InvalidTwilioRequest,
    classify_keyword,
    forms,
    parse_form,
    parse_inbound,
    parse_status,
)
from tests.channels.twilio.wire import ACCOUNT_SID, sid, sms_form, whatsapp_form


def test_sms_is_parsed_into_an_inbound_message() -> None:
    form = sms_form()
    message = parse_inbound(form)
    assert message.message_sid == form["MessageSid"]
    assert message.account_sid == ACCOUNT_SID
    assert message.messaging_service_sid is None
    assert message.channel == "sms"
    assert message.from_address == "+15557654321"
    assert message.to_address == "+15550001111"
    assert message.customer_id == "+15557654321"
    assert message.text == "Hello, where is my order?"
    assert message.media == []
    assert message.profile_name is None
    assert message.location is None
    assert message.button is None
    assert message.keyword is None
    assert message.idempotency_token is None
    assert not message.is_empty


def test_fields_without_a_mapping_are_kept_in_raw_and_mapped_ones_are_not() -> None:
    message = parse_inbound(sms_form(SomeFutureField="42", MessagingServiceSid="MG" + "a" * 32))
    assert message.raw["SomeFutureField"] == "42"
    assert message.raw["FromCity"] == "SAN FRANCISCO"
    assert message.raw["SmsStatus"] == "received"
    assert message.messaging_service_sid == "MG" + "a" * 32
    assert {"Body", "From", "To", "MessageSid", "AccountSid", "NumMedia", "MessagingServiceSid"}.isdisjoint(message.raw)


def test_mms_with_two_media_items_keeps_urls_and_types_in_order() -> None:
    base = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'1' * 32}/Media"
    form = sms_form(
        Body="",
        NumMedia="2",
        MediaUrl0=f"{base}/ME{'a' * 32}",
        MediaContentType0="image/jpeg",
        MediaUrl1=f"{base}/ME{'b' * 32}",
        MediaContentType1="application/pdf",
    )
    message = parse_inbound(form)
    assert message.media == [
        Media(url=f"{base}/ME{'a' * 32}", content_type="image/jpeg"),
        Media(url=f"{base}/ME{'b' * 32}", content_type="application/pdf"),
    ]
    assert message.text == ""
    assert not message.is_empty
    assert not {"MediaUrl0", "MediaContentType1"} & set(message.raw)


def test_whatsapp_message_splits_prefix_and_keeps_profile_name() -> None:
    message = parse_inbound(whatsapp_form())
    assert message.channel == "whatsapp"
    assert message.from_address == "whatsapp:+15557654321"
    assert message.to_address == "whatsapp:+15550001111"
    assert message.customer_id == "+15557654321"
    assert message.profile_name == "Ada Lovelace"
    assert message.raw["WaId"] == "15557654321"


def test_whatsapp_location_is_parsed() -> None:
    form = whatsapp_form(
        Body="",
        MessageType="location",
        Latitude="37.7749",
        Longitude="-122.4194",
        Address="1 Market St, San Francisco",
        Label="Office",
    )
    message = parse_inbound(form)
    assert message.location == {
        "latitude": 37.7749,
        "longitude": -122.4194,
        "address": "1 Market St, San Francisco",
        "label": "Office",
    }
    assert not message.is_empty
    assert "Latitude" not in message.raw
    assert message.raw["MessageType"] == "location"


def test_unparseable_location_is_left_in_raw() -> None:
    message = parse_inbound(whatsapp_form(Latitude="north", Longitude="-122.4"))
    assert message.location is None
    assert message.raw["Latitude"] == "north"


def test_whatsapp_button_reply_is_parsed() -> None:
    form = whatsapp_form(
        Body="Track my order", MessageType="button", ButtonText="Track my order", ButtonPayload="TRACK"
    )
    message = parse_inbound(form)
    assert message.button == {"text": "Track my order", "payload": "TRACK"}
    assert message.text == "Track my order"


def test_whatsapp_from_that_is_not_a_phone_number_is_kept_as_is() -> None:
    message = parse_inbound(whatsapp_form(From="whatsapp:US.1a2b3c4d5e6f7a8b"))
    assert message.customer_id == "US.1a2b3c4d5e6f7a8b"
    assert message.from_address == "whatsapp:US.1a2b3c4d5e6f7a8b"


def test_nul_bytes_and_invalid_utf8_are_removed_from_the_text() -> None:
    form = sms_form(Body="placeholder")
    raw = urllib.parse.urlencode(form).encode().replace(b"Body=placeholder", b"Body=+Hi%00+there%FF%FE+%ED%A0%80end+")
    message = parse_inbound(parse_form(raw))
    assert message.text == "Hi there end"


def test_lone_surrogates_are_removed_from_text_and_raw() -> None:
    message = parse_inbound(sms_form(Body="ok \ud83d!", Extra="x\udc00y", ProfileName="\x00Bob"))
    assert message.text == "ok !"
    assert message.raw["Extra"] == "xy"
    assert message.profile_name == "Bob"


@pytest.mark.parametrize("body", ["", "   \n\t"])
def test_empty_body_without_media_is_empty(body: str) -> None:
    message = parse_inbound(sms_form(Body=body))
    assert message.text == ""
    assert message.is_empty


def test_missing_body_is_empty() -> None:
    form = sms_form()
    del form["Body"]
    assert parse_inbound(form).is_empty


def test_idempotency_token_is_read_case_insensitively() -> None:
    message = parse_inbound(sms_form(), {"i-twilio-idempotency-token": "tok-123", "X-Twilio-Signature": "s"})
    assert message.idempotency_token == "tok-123"


def test_plus_decoded_as_space_is_restored() -> None:
    raw = urllib.parse.urlencode(sms_form()).replace("From=%2B", "From=+").encode()
    assert parse_inbound(parse_form(raw)).from_address == "+15557654321"


@pytest.mark.parametrize("field", ["MessageSid", "AccountSid", "From", "To"])
def test_missing_required_field_is_rejected(field: str) -> None:
    form = sms_form()
    del form[field]
    with pytest.raises(InvalidTwilioRequest) as caught:
        parse_inbound(form)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MessageSid", "SM123"),
        ("MessageSid", "SM" + "z" * 32),
        ("AccountSid", ""),
        ("From", "   "),
        ("From", "whatsapp:"),
        ("From", "+1555\x00000"),
        ("To", "+1" + "5" * 300),
        ("To", "whatsapp:+15550001111"),
    ],
)
def test_malformed_required_field_is_rejected(field: str, value: str) -> None:
    with pytest.raises(InvalidTwilioRequest) as caught:
        parse_inbound(sms_form(**{field: value}))
    assert caught.value.field == field


def test_opt_out_keyword_is_classified_on_inbound() -> None:
    assert parse_inbound(sms_form(Body=" Stop. ")).keyword is Keyword.OPTOUT


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        *[(word, "optout") for word in ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]],
        *[(word, "optin") for word in ["START", "YES", "UNSTOP"]],
        ("HELP", "help"),
        ("stop", "optout"),
        ("Stop.", "optout"),
        (" stop ", "optout"),
        ("STOP!!!", "optout"),
        ("¡Stop!", "optout"),
        ("\nunsubscribe\n", "optout"),
        ("\uff33\uff54\uff4f\uff50", "optout"),  # full-width "Stop"
        ("yes", "optin"),
        ("help?", "help"),
        ("please stop sending", None),
        ("stop it", None),
        ("stopping", None),
        ("S.T.O.P", None),
        ("", None),
        ("hello", None),
        ("yes please", None),
    ],
)
def test_keyword_classification(text: str, keyword: str | None) -> None:
    assert classify_keyword(text) == keyword


def test_parse_form_keeps_blank_values_and_last_duplicate() -> None:
    assert parse_form(b"Body=&A=1&A=2&To=%2B1555+x") == {"Body": "", "A": "2", "To": "+1555 x"}


def test_parse_form_rejects_a_body_with_thousands_of_fields() -> None:
    with pytest.raises(InvalidTwilioRequest) as caught:
        parse_form(b"&".join(b"F%d=1" % i for i in range(5000)))
    assert caught.value.field == "body"


def status_form(**overrides: str) -> dict[str, str]:
    form = forms.status_form(
        message_sid=sid(), account_sid=ACCOUNT_SID, status="delivered", from_="+15550001111", to="+15557654321"
    )
    form.update(overrides)
    return form


def test_status_callback_is_parsed() -> None:
    form = status_form()
    update = parse_status(form)
    assert update.message_sid == form["MessageSid"]
    assert update.status == "delivered"
    assert update.error_code is None
    assert update.channel == "sms"
    assert update.to == "+15557654321"
    assert update.from_address == "+15550001111"


def test_failed_status_carries_error_code_and_whatsapp_channel() -> None:
    form = status_form(
        MessageStatus="undelivered",
        SmsStatus="undelivered",
        ErrorCode="63016",
        ErrorMessage="Outside the 24h window",
        To="whatsapp:+15557654321",
        From="whatsapp:+15550001111",
    )
    update = parse_status(form)
    assert (update.status, update.error_code, update.error_message) == ("undelivered", 63016, "Outside the 24h window")
    assert update.channel == "whatsapp"


def test_legacy_sms_fields_are_enough_for_a_status_callback() -> None:
    form = status_form()
    del form["MessageSid"], form["MessageStatus"]
    update = parse_status(form)
    assert (update.message_sid, update.status) == (form["SmsSid"], "delivered")


@pytest.mark.parametrize("missing", [("MessageSid", "SmsSid"), ("MessageStatus", "SmsStatus")])
def test_status_callback_without_sid_or_status_is_rejected(missing: tuple[str, str]) -> None:
    form = status_form()
    for field in missing:
        del form[field]
    with pytest.raises(InvalidTwilioRequest):
        parse_status(form)


def status_rank(status: str) -> int:
    return DeliveryStatus(status).rank


def test_statuses_rank_in_lifecycle_order() -> None:
    order = ["accepted", "queued", "sending", "sent", "delivered", "read"]
    assert [status_rank(s) for s in order] == sorted(status_rank(s) for s in order)
    assert len({status_rank(s) for s in order}) == len(order)
    assert status_rank("scheduled") == status_rank("accepted")
    assert status_rank("failed") == status_rank("undelivered") == status_rank("delivered")


def apply(statuses: list[str]) -> str | None:
    current: DeliveryStatus | None = None
    for status in statuses:
        if is_newer(current, DeliveryStatus(status)):
            current = DeliveryStatus(status)
    return current.value if current else None


@pytest.mark.parametrize(
    ("arrivals", "final"),
    [
        (["queued", "sent", "delivered"], "delivered"),
        (["delivered", "sent"], "delivered"),
        (["sent", "delivered", "queued", "sending"], "delivered"),
        (["sent", "read", "delivered"], "read"),
        (["failed", "sent"], "failed"),
        (["undelivered", "delivered"], "undelivered"),
        (["sent", "sent"], "sent"),
        (["sent", "some_future_status"], "sent"),
        (["some_future_status", "queued"], "queued"),
    ],
)
def test_status_never_moves_backwards(arrivals: list[str], final: str) -> None:
    assert apply(arrivals) == final
