"""Structured logs: JSON in production, readable in development; phone numbers masked.

Standard-library loggers (uvicorn, rq, third-party libraries, ours) all go through
structlog's formatter, so every line carries the request id and session id bound in context
variables, and nothing below LOG_LEVEL is written whatever level a library gives its logger.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

PHONE = re.compile(r"(\+?\d{1,3})(\d{3,})(\d{4})")
PHONE_CANDIDATE = re.compile(r"\+\d{8,15}")
SECRET_KEYS = ("token", "secret", "password", "authorization", "api_key", "auth_token")


def mask_phone(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        number = match.group(0)
        return number[:4] + "*" * max(len(number) - 8, 3) + number[-4:]

    return PHONE_CANDIDATE.sub(repl, text)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if key.lower() in SECRET_KEYS or key.lower().endswith(("_token", "_secret", "_password")):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = mask_phone(value)
    return event


def configure(level: str = "INFO", fmt: str = "console") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    # The handler filters too: a library may set its own logger's level (bm25s sets DEBUG on
    # import), and a record passes its own logger's level only, never its ancestors'.
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "openai._base_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error", "rq.worker", "rq.job", "rq.scheduler"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
