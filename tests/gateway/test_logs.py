"""Logs carry the request and session ids and never a full phone number or a secret."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from gateway.logs import configure, mask_phone


def test_phone_numbers_are_masked() -> None:
    assert mask_phone("from +15557654321 to whatsapp:+447700900123") == "from +155****4321 to whatsapp:+447*****0123"


def test_json_logs_have_context_and_no_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    try:
        structlog.contextvars.bind_contextvars(request_id="req-1", session_id="sess-1")
        logging.getLogger("agent_core.test").info("reply sent to %s", "+15557654321")
        structlog.get_logger("gateway.test").info("token check", api_token="cgw_secret", to="+15557654321")
        out = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.contextvars.clear_contextvars()
        logging.getLogger().handlers.clear()
    assert out[0]["event"] == "reply sent to +155****4321"
    assert out[0]["request_id"] == "req-1" and out[0]["session_id"] == "sess-1"
    assert out[1]["api_token"] == "[redacted]" and out[1]["to"] == "+155****4321"
    assert "cgw_secret" not in json.dumps(out) and "5557654321" not in json.dumps(out)
