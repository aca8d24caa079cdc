"""Visitor tokens: what a widget holds instead of an API token. Signed (HMAC-SHA256 with the
install's key), naming one agent, one session and its customer, so it opens nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

PREFIX = "vt1"


@dataclass(frozen=True, slots=True)
class Visitor:
    agent_id: str
    session_id: str
    customer_id: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, body: str) -> str:
    return _b64(hmac.new(key.encode(), f"{PREFIX}.{body}".encode(), hashlib.sha256).digest())


def issue(key: str, visitor: Visitor) -> str:
    claims = {"a": visitor.agent_id, "s": visitor.session_id, "c": visitor.customer_id, "t": int(time.time())}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{PREFIX}.{body}.{_mac(key, body)}"


def read(key: str, token: str) -> Visitor | None:
    """The visitor a token this install signed names, or None (forged, altered, malformed)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    body, mac = parts[1], parts[2]
    if not hmac.compare_digest(_mac(key, body), mac):
        return None
    try:
        claims = json.loads(_unb64(body))
        return Visitor(str(claims["a"]), str(claims["s"]), str(claims["c"]))
    except (ValueError, KeyError, TypeError):
        return None
