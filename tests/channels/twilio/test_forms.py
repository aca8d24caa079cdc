from __future__ import annotations

import re
from typing import Any

import pytest

from channels.twilio import parse_inbound, parse_status
from channels.twilio.forms import inbound_form, new_sid, status_form

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
CUSTOMER = "+15557654321"
AGENT_NUMBER = "+15550001111"
MEDIA_BASE = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM{'1' * 32}/Media"


def form_for(**fields: Any) -> dict[str, str]:
    """An inbound form from CUSTOMER to AGENT_NUMBER with a new MessageSid, plus `fields`."""
    defaults: dict[str, Any] = {
        "message_sid": new_sid(),
        "account_sid": ACCOUNT_SID,
        "from_": CUSTOMER,
        "to": AGENT_NUMBER,
    }
    return inbound_form(**(defaults | fields))


def test_new_sid_is_two_letters_and_32_hex_digits_and_never_repeats() -> None:
    sids = {new_sid("MG") for _ in range(100)}
    assert len(sids) == 100
    assert all(re.fullmatch("MG[0-9a-f]{32}", s) for s in sids)
    assert new_sid().startswith("SM")


def test_sms_form_has_every_field_twilio_sends_and_parses_as_sms() -> None:
    sid = new_sid()
    form = form_for(message_sid=sid, body="Where is it?")
    assert set(form) == {
        "MessageSid", "SmsMessageSid", "SmsSid", "AccountSid", "From", "To", "Body", "NumMedia", "NumSegments",
        "SmsStatus", "ApiVersion", "ToCountry", "ToState", "ToCity", "ToZip", "FromCountry", "FromState",
        "FromCity", "FromZip",
    }  # fmt: skip
    assert form["SmsSid"] == form["SmsMessageSid"] == sid
    message = parse_inbound(form)
    assert (message.message_sid, message.account_sid) == (sid, ACCOUNT_SID)
    assert message.channel == "sms"
    assert (message.from_address, message.to_address, message.customer_id) == (CUSTOMER, AGENT_NUMBER, CUSTOMER)
    assert message.text == "Where is it?"
    assert message.media == []
    assert message.profile_name is None
    assert message.messaging_service_sid is None
    assert message.raw["SmsStatus"] == "received"
    assert message.raw["FromCity"] == "SAN FRANCISCO"


def test_whatsapp_form_gets_the_prefix_wa_id_and_profile_name() -> None:
    form = form_for(body="Hi there", profile_name="Ada Lovelace", whatsapp=True)
    assert set(form) == {
        "MessageSid", "SmsMessageSid", "SmsSid", "AccountSid", "From", "To", "Body", "NumMedia", "NumSegments",
        "SmsStatus", "ApiVersion", "ProfileName", "WaId", "MessageType", "ReferralNumMedia",
    }  # fmt: skip
    message = parse_inbound(form)
    assert message.channel == "whatsapp"
    assert message.from_address == "whatsapp:" + CUSTOMER
    assert message.to_address == "whatsapp:" + AGENT_NUMBER
    assert message.customer_id == CUSTOMER
    assert message.profile_name == "Ada Lovelace"
    assert (message.raw["WaId"], message.raw["MessageType"]) == ("15557654321", "text")


def test_whatsapp_addresses_that_already_have_the_prefix_keep_one() -> None:
    form = form_for(from_="whatsapp:" + CUSTOMER, to="whatsapp:" + AGENT_NUMBER, whatsapp=True)
    assert (form["From"], form["To"]) == ("whatsapp:" + CUSTOMER, "whatsapp:" + AGENT_NUMBER)
    assert form["WaId"] == "15557654321"


def test_a_whatsapp_address_in_an_sms_form_is_refused() -> None:
    with pytest.raises(ValueError, match="whatsapp=True"):
        form_for(from_="whatsapp:" + CUSTOMER)


def test_media_items_are_numbered_and_parse_in_order() -> None:
    media = [(f"{MEDIA_BASE}/ME{'a' * 32}", "image/jpeg"), (f"{MEDIA_BASE}/ME{'b' * 32}", "application/pdf")]
    form = form_for(media=media)
    assert form["NumMedia"] == "2"
    assert (form["MediaUrl1"], form["MediaContentType1"]) == media[1]
    message = parse_inbound(form)
    assert [(item.url, item.content_type) for item in message.media] == media
    assert message.text == ""
    assert not {"MediaUrl0", "MediaContentType1"} & set(message.raw)


def test_whatsapp_media_sets_the_message_type_from_the_first_item() -> None:
    def message_type(content_type: str) -> str:
        media = [(f"{MEDIA_BASE}/ME{'c' * 32}", content_type)]
        return form_for(media=media, whatsapp=True)["MessageType"]

    assert [message_type(t) for t in ("image/png", "video/mp4", "audio/ogg", "application/pdf")] == [
        "image",
        "video",
        "audio",
        "document",
    ]


def test_messaging_service_sid_is_sent_when_given() -> None:
    service = new_sid("MG")
    message = parse_inbound(form_for(messaging_service_sid=service))
    assert message.messaging_service_sid == service
    assert "MessagingServiceSid" not in message.raw


def test_status_form_parses_into_a_status_update() -> None:
    sid = new_sid()
    form = status_form(message_sid=sid, account_sid=ACCOUNT_SID, status="delivered", from_=AGENT_NUMBER, to=CUSTOMER)
    assert form["SmsSid"] == sid and form["SmsStatus"] == "delivered"
    assert "ErrorCode" not in form
    update = parse_status(form)
    assert (update.message_sid, update.status, update.channel) == (sid, "delivered", "sms")
    assert (update.from_address, update.to) == (AGENT_NUMBER, CUSTOMER)
    assert update.error_code is None and update.error_message is None


def test_whatsapp_status_form_carries_the_error_and_the_channel() -> None:
    form = status_form(
        message_sid=new_sid(),
        account_sid=ACCOUNT_SID,
        status="undelivered",
        from_=AGENT_NUMBER,
        to=CUSTOMER,
        error_code=63016,
        error_message="Outside the 24h window",
        whatsapp=True,
    )
    update = parse_status(form)
    assert (update.status, update.error_code, update.error_message) == ("undelivered", 63016, "Outside the 24h window")
    assert update.channel == "whatsapp"
    assert update.to == "whatsapp:" + CUSTOMER
