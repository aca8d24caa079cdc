"""Place outbound calls through Twilio's Calls API with the official SDK (SPEC §8).

Only parameters of `shared/reference/twilio-api-v2010-messages-calls.json` are sent: To, From,
Url, StatusCallback, StatusCallbackEvent and TimeLimit. A retry must never place a second
call, so only failures where Twilio cannot have created one are retryable: 429/5xx answers
and connections that never carried the request. A request that may have reached Twilio and
got no answer (a read timeout, a dropped connection) fails the call instead.
"""

from __future__ import annotations

import json

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from channels.models import (
    CallReceipt,
    CallStatus,
    OutboundCall,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from channels.twilio import DEFAULT_API_BASE_URL
from channels.twilio.errors import is_retryable
from channels.twilio.http_client import TwilioHttpxClient
from channels.twilio.sender import _error_message, _retry_after
from channels.twilio.voice import STATUS_EVENTS

# The request never left this machine: no call can exist.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def create_call_params(call: OutboundCall) -> dict[str, object]:
    """The SDK's `calls.create` keyword arguments for `call`."""
    return {
        "to": call.to,
        "from_": call.from_number,
        "url": call.url,
        "status_callback": call.status_callback,
        "status_callback_event": list(STATUS_EVENTS),
        "time_limit": call.time_limit_s,
    }


class TwilioCallPlacer:
    def __init__(
        self, account_sid: str, auth_token: str, http_client: httpx.Client, api_base_url: str = DEFAULT_API_BASE_URL
    ) -> None:
        self._http = TwilioHttpxClient(http_client, api_base_url)
        self._client = Client(account_sid, auth_token, http_client=self._http)

    def place(self, call: OutboundCall) -> CallReceipt:
        try:
            created = self._client.calls.create(**create_call_params(call))
        except TwilioRestException as exc:
            response = self._http.last_response
            status_code = int(exc.status)
            code = exc.code if isinstance(exc.code, int) and exc.code != status_code else None
            text = _error_message(response.text if response else "") or str(exc.msg)
            if is_retryable(status_code, code):
                retry_after = _retry_after(response.headers if response else None)
                raise RetryableDeliveryError(text, status_code=status_code, code=code, retry_after=retry_after) from exc
            raise PermanentDeliveryError(text, status_code=status_code, code=code) from exc
        except _NOT_SENT as exc:
            raise RetryableDeliveryError(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, json.JSONDecodeError, TwilioException) as exc:
            raise PermanentDeliveryError(
                f"Twilio's answer was lost ({type(exc).__name__}); not retried, so a second call is never placed"
            ) from exc
        if not created.sid:
            raise PermanentDeliveryError("Twilio answered without a call SID")
        try:
            status = CallStatus(str(created.status or "queued"))
        except ValueError:
            status = CallStatus.queued
        return CallReceipt(call_sid=str(created.sid), status=status)
