"""The Twilio SDK's HTTP seam, implemented on an injected httpx.Client (so timeouts are ours and respx can mock it)."""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from twilio.http import HttpClient
from twilio.http.response import Response

from channels.twilio import DEFAULT_API_BASE_URL

_logger = logging.getLogger(__name__)


class TwilioHttpxClient(HttpClient):  # type: ignore[misc]
    """Sends the Twilio SDK's requests through `client`, redirecting them to `api_base_url` when it is not Twilio's.

    With the default base URL every request goes where the SDK addressed it (api.twilio.com, other
    Twilio domains, regional edges). With another base (a Twilio-compatible mock or proxy) every
    request goes to that scheme+host, with the base's path prefix (if any) before the SDK's path.
    """

    def __init__(
        self,
        client: httpx.Client,
        api_base_url: str = DEFAULT_API_BASE_URL,
        timeout: float | None = None,
    ) -> None:
        super().__init__(_logger, is_async=False, timeout=timeout)
        timeouts = client.timeout
        if timeout is None and None in (timeouts.connect, timeouts.read, timeouts.write, timeouts.pool):
            raise ValueError("the httpx client for Twilio needs connect/read/write/pool timeouts (or pass timeout=)")
        self.client = client
        base = urlsplit(api_base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(f"api_base_url must be an http(s) URL, got {api_base_url!r}")
        self._base = None if api_base_url.rstrip("/") == DEFAULT_API_BASE_URL else base
        self._local = threading.local()

    @property
    def last_response(self) -> Response | None:
        """The last response this thread received (the SDK's exceptions drop headers such as Retry-After)."""
        response: Response | None = getattr(self._local, "response", None)
        return response

    def rewrite(self, url: str) -> str:
        """The URL a request for `url` is actually sent to."""
        if self._base is None:
            return url
        parts = urlsplit(url)
        return urlunsplit((self._base.scheme, self._base.netloc, self._base.path + parts.path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request and return it as the SDK's Response; httpx errors propagate unchanged."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        timeout = timeout if timeout is not None else self.timeout
        self._local.response = None
        body: dict[str, Any] = {}
        if headers and headers.get("Content-Type", "").startswith(("application/json", "application/scim+json")):
            body["json"] = data
        else:
            body["data"] = data
        response = self.client.request(
            method.upper(),
            self.rewrite(url),
            params=params,  # type: ignore[arg-type]
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=allow_redirects,
            **body,
        )
        result = Response(response.status_code, response.text, response.headers)
        self._local.response = result
        return result
