from __future__ import annotations

import random
import urllib.parse

import pytest
from twilio.request_validator import RequestValidator

from channels.twilio import parse_form, verify, webhook_url
from channels.twilio.signatures import signature
from tests.channels.twilio.wire import AUTH_TOKEN, sms_form

URL = "https://gw.example.com/twilio/messages"


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def test_valid_signature_is_accepted() -> None:
    params = sms_form()
    assert verify(AUTH_TOKEN, URL, params, sign(URL, params)) is True


def test_signature_made_with_another_token_is_rejected() -> None:
    params = sms_form()
    assert verify(AUTH_TOKEN, URL, params, sign(URL, params, token="0" * 32)) is False


def test_tampered_param_is_rejected() -> None:
    params = sms_form()
    signature = sign(URL, params)
    assert verify(AUTH_TOKEN, URL, {**params, "Body": "send me everything"}, signature) is False


def test_extra_param_is_rejected() -> None:
    params = sms_form()
    signature = sign(URL, params)
    assert verify(AUTH_TOKEN, URL, {**params, "Injected": "1"}, signature) is False


@pytest.mark.parametrize(
    "signed_url",
    [
        "http://gw.example.com/twilio/messages",
        "https://gw.example.com/twilio/messages/",
        "https://gw.example.com/twilio/messages?agent=a1",
        "https://other.example.com/twilio/messages",
    ],
)
def test_signature_for_another_url_is_rejected(signed_url: str) -> None:
    params = sms_form()
    assert verify(AUTH_TOKEN, URL, params, sign(signed_url, params)) is False


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_rejected(signature: str | None) -> None:
    assert verify(AUTH_TOKEN, URL, sms_form(), signature) is False


def test_empty_auth_token_never_validates() -> None:
    params = sms_form()
    assert verify("", URL, params, sign(URL, params, token="")) is False


def test_signature_with_explicit_default_port_is_accepted() -> None:
    params = sms_form()
    assert verify(AUTH_TOKEN, URL, params, sign("https://gw.example.com:443/twilio/messages", params)) is True


def test_fragment_in_public_base_url_is_stripped_and_still_validates() -> None:
    params = sms_form()
    # Twilio signs the configured URL without its "#rc=5" connection-override fragment.
    url = webhook_url("https://gw.example.com#rc=5", "/twilio/messages")
    assert url == URL
    assert verify(AUTH_TOKEN, url, params, sign(URL, params)) is True


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("https://gw.example.com", "/twilio/messages", "", "https://gw.example.com/twilio/messages"),
        ("https://gw.example.com/", "twilio/messages", "", "https://gw.example.com/twilio/messages"),
        ("https://gw.example.com/chat/", "/twilio/messages", "", "https://gw.example.com/chat/twilio/messages"),
        ("https://gw.example.com#rc=5&rp=all", "/twilio/messages/status", "", URL + "/status"),
        ("https://gw.example.com", "/twilio/messages", "agent=a1&x=%20", URL + "?agent=a1&x=%20"),
        ("https://gw.example.com:8443", "/twilio/messages", "", "https://gw.example.com:8443/twilio/messages"),
    ],
)
def test_webhook_url_joins_base_path_and_query(base: str, path: str, query: str, expected: str) -> None:
    assert webhook_url(base, path, query) == expected


def test_query_string_is_part_of_what_is_signed() -> None:
    params = sms_form()
    signed = sign(URL + "?agent=a1", params)
    assert verify(AUTH_TOKEN, webhook_url("https://gw.example.com", "/twilio/messages", "agent=a1"), params, signed)
    assert not verify(AUTH_TOKEN, URL, params, signed)


def test_raw_body_parsed_with_parse_form_validates() -> None:
    params = sms_form(Body="Café ☕ & 100% + more = fun? 👍")
    raw = urllib.parse.urlencode(params).encode()
    assert verify(AUTH_TOKEN, URL, parse_form(raw), sign(URL, params)) is True


def test_nul_in_body_survives_parse_form_so_signature_still_validates() -> None:
    # Twilio signs the value it sent, NUL included; stripping it before verifying would reject a real message.
    params = sms_form(Body="a\x00b")
    raw = urllib.parse.urlencode(params).encode()
    assert verify(AUTH_TOKEN, URL, parse_form(raw), sign(URL, params)) is True


def test_signature_is_the_sdks_on_random_forms() -> None:
    """`signature` is what the SDK's compute_signature gives, for forms of every shape: names
    that sort differently by case and code point, empty values, non-ASCII, '&', '=', '%'."""
    rng = random.Random(13)
    alphabet = "aAzZ09_-+&=%/ \u00e9\u4e2d\U0001f600\x00"
    for _ in range(300):
        form = {
            "".join(rng.choices(alphabet, k=rng.randint(1, 8))): "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
            for _ in range(rng.randint(0, 25))
        }
        token = "".join(rng.choices("0123456789abcdef", k=32))
        url = rng.choice([URL, URL + "?a=1&b=%20", "http://127.0.0.1:8000/twilio/messages/status"])
        assert signature(token, url, form) == RequestValidator(token).compute_signature(url, form)
        assert verify(token, url, form, signature(token, url, form)) is True


def test_a_signature_under_the_other_port_variant_is_still_accepted() -> None:
    """Twilio may sign the URL with or without the explicit default port: the first check
    (the URL as given) fails, the SDK's variants accept it."""
    params = sms_form()
    with_port = "https://gw.example.com:443/twilio/messages"
    assert verify(AUTH_TOKEN, with_port, params, sign(URL, params)) is True
    assert verify(AUTH_TOKEN, URL, params, sign(with_port, params)) is True
