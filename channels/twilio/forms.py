"""Build Twilio messaging webhook forms exactly as Twilio posts them, for tests, benchmarks and `chatgw chat`.

`inbound_form` gives every field of an inbound SMS or WhatsApp message, `status_form` those of a
message status callback; `parse_inbound` and `parse_status` read them back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from channels.twilio.parse import WHATSAPP_PREFIX

API_VERSION = "2010-04-01"

# Twilio adds its lookup of where both SMS numbers are; the gateway keeps these only in `raw`.
_SMS_GEOGRAPHY = {
    "ToCountry": "US",
    "ToState": "CA",
    "ToCity": "SAN FRANCISCO",
    "ToZip": "94105",
    "FromCountry": "US",
    "FromState": "CA",
    "FromCity": "SAN FRANCISCO",
    "FromZip": "94105",
}
_WHATSAPP_MEDIA_TYPES = ("image", "video", "audio")


def new_sid(prefix: str = "SM") -> str:
    """A fresh random SID: a two-letter prefix (SM message, AC account, MG messaging service…) and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def inbound_form(
    *,
    message_sid: str,
    account_sid: str,
    from_: str,
    to: str,
    body: str = "",
    media: Sequence[tuple[str, str]] = (),
    profile_name: str | None = None,
    messaging_service_sid: str | None = None,
    whatsapp: bool = False,
) -> dict[str, str]:
    """The form Twilio posts to a messaging webhook for one inbound message.

    `from_` and `to` are phone numbers; with `whatsapp=True` they get the `whatsapp:` prefix (kept
    if present) and the form WhatsApp's fields. `media` holds (url, content type) pairs.
    """
    from_address, to_address = _address(from_, whatsapp), _address(to, whatsapp)
    form = {
        "MessageSid": message_sid,
        "SmsMessageSid": message_sid,
        "SmsSid": message_sid,
        "AccountSid": account_sid,
        "From": from_address,
        "To": to_address,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": API_VERSION,
    }
    for index, (url, content_type) in enumerate(media):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = content_type
    if messaging_service_sid is not None:
        form["MessagingServiceSid"] = messaging_service_sid
    if profile_name is not None:
        form["ProfileName"] = profile_name
    if whatsapp:
        form["WaId"] = from_address.removeprefix(WHATSAPP_PREFIX).lstrip("+")
        form["MessageType"] = _whatsapp_message_type(media)
        form["ReferralNumMedia"] = "0"
    else:
        form.update(_SMS_GEOGRAPHY)
    return form


def status_form(
    *,
    message_sid: str,
    account_sid: str,
    status: str,
    from_: str,
    to: str,
    error_code: int | None = None,
    error_message: str | None = None,
    whatsapp: bool = False,
) -> dict[str, str]:
    """The form Twilio posts to a message's StatusCallback when its delivery status changes.

    `from_` is the sender (the gateway's number), `to` the customer; `whatsapp` as for `inbound_form`.
    """
    form = {
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": account_sid,
        "From": _address(from_, whatsapp),
        "To": _address(to, whatsapp),
        "ApiVersion": API_VERSION,
    }
    if error_code is not None:
        form["ErrorCode"] = str(error_code)
    if error_message is not None:
        form["ErrorMessage"] = error_message
    return form


def _address(number: str, whatsapp: bool) -> str:
    if whatsapp:
        return WHATSAPP_PREFIX + number.removeprefix(WHATSAPP_PREFIX)
    if number.startswith(WHATSAPP_PREFIX):
        raise ValueError(f"{number!r} is a WhatsApp address: pass whatsapp=True")
    return number


def _whatsapp_message_type(media: Sequence[tuple[str, str]]) -> str:
    if not media:
        return "text"
    kind = media[0][1].partition("/")[0]
    return kind if kind in _WHATSAPP_MEDIA_TYPES else "document"
