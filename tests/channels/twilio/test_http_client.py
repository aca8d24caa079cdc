from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import respx
from twilio.http.response import Response

from channels.twilio import TwilioHttpxClient

MOCK = "http://127.0.0.1:9999"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def test_default_base_leaves_every_twilio_url_alone(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http)
    for url in [
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
        "https://messaging.twilio.com/v1/Services",
        "https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/AC1/Calls.json",
    ]:
        assert client.rewrite(url) == url


def test_other_base_replaces_scheme_and_host_and_keeps_path_and_query(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http, MOCK)
    assert (
        client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?PageSize=5")
        == "http://127.0.0.1:9999/2010-04-01/Accounts/AC1/Messages.json?PageSize=5"
    )


def test_base_with_a_path_prefix_keeps_the_prefix(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http, "https://proxy.example.com/twilio/")
    assert (
        client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json")
        == "https://proxy.example.com/twilio/2010-04-01/Accounts/AC1/Messages.json"
    )


def test_request_goes_through_the_injected_client_and_returns_an_sdk_response(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http, MOCK)
    with respx.mock(base_url=MOCK) as router:
        route = router.post("/2010-04-01/Accounts/AC1/Messages.json").respond(
            201, json={"sid": "SM1"}, headers={"X-Extra": "yes"}
        )
        response = client.request(
            "post",
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            data={"To": "+15551234567", "MediaUrl": ["https://a.example/1.png", "https://a.example/2.png"]},
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            auth=("AC1", "secret"),
        )
    assert isinstance(response, Response)
    assert (response.status_code, response.ok, response.text) == (201, True, '{"sid":"SM1"}')
    assert response.headers["x-extra"] == "yes"
    assert client.last_response is response
    sent = route.calls.last.request
    assert sent.content == (
        b"To=%2B15551234567&MediaUrl=https%3A%2F%2Fa.example%2F1.png&MediaUrl=https%3A%2F%2Fa.example%2F2.png"
    )
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"AC1:secret").decode()


def test_json_requests_are_sent_as_json(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http, MOCK)
    with respx.mock(base_url=MOCK) as router:
        route = router.post("/v1/Things").respond(200, json={})
        client.request(
            "POST", "https://api.twilio.com/v1/Things", data={"a": 1}, headers={"Content-Type": "application/json"}
        )
    assert route.calls.last.request.content == b'{"a":1}'


def test_network_errors_propagate_as_httpx_errors(http: httpx.Client) -> None:
    client = TwilioHttpxClient(http, MOCK)
    with respx.mock(base_url=MOCK) as router:
        router.post("/x").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(httpx.ConnectError):
            client.request("POST", "https://api.twilio.com/x")
    assert client.last_response is None


def test_client_without_timeouts_is_refused() -> None:
    with httpx.Client(timeout=None) as unbounded, pytest.raises(ValueError, match="timeouts"):
        TwilioHttpxClient(unbounded)


def test_base_url_must_be_http(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="api_base_url"):
        TwilioHttpxClient(http, "127.0.0.1:9999")
