"""Request parsing shared by endpoints: JSON bodies into models, query parameters."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import Unprocessable, validation_messages

M = TypeVar("M", bound=BaseModel)

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


async def json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    raw = await request.body()
    if ctype and "json" not in ctype:
        raise Unprocessable(f"body: expected Content-Type application/json, got '{ctype.split(';')[0]}'")
    if not raw.strip():
        raise Unprocessable("body: a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unprocessable(f"body: not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unprocessable(f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise Unprocessable("body: must be a JSON object")
    return value


async def parse_body(request: Request, model: type[M]) -> M:
    data = await json_body(request)
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(*validation_messages(exc)) from exc


def query_int(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Unprocessable(f"{name}: must be an integer, got '{raw[:50]}'") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise Unprocessable(f"{name}: must be {bound}")
    return value


def query_float(request: Request, name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Unprocessable(f"{name}: must be a number, got '{raw[:50]}'") from None
    if not minimum <= value <= maximum:
        raise Unprocessable(f"{name}: must be between {minimum:g} and {maximum:g}")
    return value


TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise Unprocessable(f"{name}: must be true or false, got '{raw[:50]}'")


def query_enum(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise Unprocessable(f"{name}: must be one of {', '.join(allowed)}; got '{raw[:50]}'")
    return raw


def customer_param(request: Request, name: str = "customer_id") -> str:
    """A customer id from the query string. An unencoded '+' of an E.164 number arrives as a
    space (form encoding); '?customer_id=+1555…' typed in curl still means the number."""
    value = request.query_params.get(name, "")
    if len(value) > 7 and value[0] == " " and value[1:].isdigit():
        return "+" + value[1:]
    return value


def limit_param(request: Request) -> int:
    return query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


def seq_position(request: Request) -> int:
    """Where a page of a thread starts: its `cursor` (the seq the previous page ended at, which
    wins), else `after_seq`, else the beginning."""
    cursor = request.query_params.get("cursor")
    if cursor:
        try:
            return int(cursor)
        except ValueError:
            raise Unprocessable("cursor: not a cursor this API issued") from None
    return query_int(request, "after_seq", 0, minimum=0)
