"""TwiML for messaging webhooks: we always answer empty and reply later through the REST API."""

from __future__ import annotations

EMPTY_RESPONSE: bytes = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
CONTENT_TYPE = "text/xml"
