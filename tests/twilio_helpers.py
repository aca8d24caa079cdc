"""Signing Twilio webhooks exactly as Twilio does, and a Twilio REST mock with its real wire format."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from agent_core.settings import TwilioSettings
from tests.channels.twilio.wire import ACCOUNT_SID, AUTH_TOKEN, MESSAGES_PATH, created, error_body, single_fields
from tests.conftest import PUBLIC_URL


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_webhook(
    client: TestClient,
    path: str,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = signed_url or PUBLIC_URL + path
    sig = signature if signature is not None else sign(url, params, token)
    hdrs = {"X-Twilio-Signature": sig, **(headers or {})} if sig != "" else dict(headers or {})
    return client.post(path, data=params, headers=hdrs)


Responder = Callable[[httpx.Request], httpx.Response]


class FakeTwilioREST:
    """Twilio's Messages endpoint: records every create request; answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.script: list[Responder] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(single_fields(request))
            responder = self.script.pop(0) if self.script else None
        return responder(request) if responder else created(request)

    def fail(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.script.append(lambda r: httpx.Response(status, json=error_body(code, message, status), headers=headers))

    @property
    def bodies(self) -> list[str]:
        return [r.get("Body", "") for r in self.requests]


def twilio_settings(messages_per_second: float = 1000) -> TwilioSettings:
    """Twilio configured with the test account, REST calls to api.twilio.com (mocked with respx)."""
    return TwilioSettings(
        _env_file=None,  # type: ignore[call-arg]
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_base_url="https://api.twilio.com",
        messages_per_second=messages_per_second,
    )


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met")


__all__ = ["ACCOUNT_SID", "AUTH_TOKEN", "MESSAGES_PATH", "FakeTwilioREST", "post_webhook", "sign", "wait_for"]
