"""Typed HTTP errors and the one place they become the `{success:false, errors:[…]}` envelope."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from agent_core.support import CommandError

log = logging.getLogger("gateway.errors")


class ApiError(Exception):
    status_code = 400

    def __init__(self, *errors: str, headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors) or [self.__class__.__doc__ or "error"]
        self.headers = headers


class BadRequest(ApiError):
    """bad request"""

    status_code = 400


class Unauthorized(ApiError):
    """missing or invalid API token"""

    status_code = 401


class Forbidden(ApiError):
    """this token's role may not do that"""

    status_code = 403


class NotFound(ApiError):
    """not found"""

    status_code = 404


class Conflict(ApiError):
    """conflict"""

    status_code = 409


class PayloadTooLarge(ApiError):
    """request body too large"""

    status_code = 413


class Unprocessable(ApiError):
    """validation failed"""

    status_code = 422


class RateLimited(ApiError):
    """rate limited"""

    status_code = 429


class Unavailable(ApiError):
    """service unavailable"""

    status_code = 503


def envelope(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status_code, headers=headers)


def error_response(status_code: int, errors: Sequence[str], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "errors": list(errors)}, status_code=status_code, headers=headers)


def validation_messages(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("body",))
        name = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "body")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{name}: {msg}")
    return out


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.errors, exc.headers)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return error_response(422, validation_messages(exc))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, [f"{text}: {request.method} {request.url.path}"], exc.headers)


async def command_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CommandError)
    return error_response(exc.status, [str(exc)])


async def client_gone_handler(request: Request, exc: Exception) -> Response:
    # The client hung up before sending its whole body: nothing was stored, nobody to answer.
    log.info("client disconnected before the request body arrived: %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, ["internal server error"])


EXCEPTION_HANDLERS = {
    ClientDisconnect: client_gone_handler,
    ApiError: api_error_handler,
    CommandError: command_error_handler,
    ValidationError: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: server_error_handler,
}
