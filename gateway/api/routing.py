"""Endpoints are declared once; the router and `/openapi.json` are both built from them.

The document says what the server enforces: a body's schema is its pydantic model's (with the
keywords the validators state), path parameters match what Starlette's router matches, and
query parameters carry the bounds the handlers check. A fuzz test (tests/gateway/
test_openapi_fuzz.py) holds the document to that.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from agent_core.store.tokens import TokenRole
from gateway.auth import authenticate
from gateway.errors import error_response
from gateway.limits import api_rate, enforce

Handler = Callable[[Request], Awaitable[Response]]

# Starlette's `{name}` matches one path segment: anything but '/'.
PATH_SEGMENT: dict[str, Any] = {"type": "string", "pattern": "^[^/]+$"}
# Session ids are the UUIDs the server issues (str(uuid4)); the pattern also keeps a generated id
# from being "active", which `GET /v1/chat/session/active` answers.
SESSION_ID: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}
PATH_PARAMS: dict[str, dict[str, Any]] = {"session_id": SESSION_ID}


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


def cursor_query(issued: str, schema: dict[str, Any] | None = None) -> Query:
    """The `cursor` of a list endpoint: opaque, taken from the previous page's `next_cursor`."""
    return Query(
        "cursor",
        f"`next_cursor` of the previous page ({issued}); a cursor this API did not issue is a 422",
        schema or {"type": "string"},
    )


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler | ASGIApp
    summary: str
    roles: frozenset[TokenRole] | None
    tag: str
    body: type[BaseModel] | dict[str, Any] | None = None
    response: type[BaseModel] | dict[str, Any] | None = None
    query: Sequence[Query] = ()
    errors: Sequence[int] = (401, 403, 404, 422)
    description: str = ""
    envelope: bool = True
    content_type: str = "application/json"
    headers: Sequence[str] = ()
    # The handler is a plain ASGI app (no `Request`/`Response` objects, no role check): the
    # Twilio messaging webhooks, the hot path (gateway/webhooks/twilio.py).
    asgi: bool = False


def _guard(endpoint: Endpoint) -> Handler:
    roles = endpoint.roles
    handler = cast(Handler, endpoint.handler)

    async def guarded(request: Request) -> Response:
        if roles is not None:
            token = await authenticate(request, roles)
            await enforce(request, "api_token", token.id, api_rate(request), "requests for this API token")
        return await handler(request)

    return guarded


def build_routes(endpoints: Iterable[Endpoint]) -> list[Route]:
    by_path: dict[str, dict[str, Handler]] = defaultdict(dict)
    routes = []
    for ep in endpoints:
        if ep.asgi:
            # Another method gets Starlette's 405, which the error handler puts in the envelope.
            assert ep.roles is None, f"{ep.path}: an ASGI endpoint has no role check"
            routes.append(Route(ep.path, ep.handler, methods=[ep.method]))
        else:
            by_path[ep.path][ep.method] = _guard(ep)
    for path, methods in by_path.items():

        async def dispatch(request: Request, _methods: dict[str, Handler] = methods) -> Response:
            handler = _methods.get(request.method) or (_methods.get("GET") if request.method == "HEAD" else None)
            if handler is None:
                allowed = ", ".join(sorted(_methods))
                return error_response(
                    405, [f"method not allowed: {request.method} {request.url.path}"], {"Allow": allowed}
                )
            return await handler(request)

        methods_all = sorted(set(methods) | ({"HEAD"} if "GET" in methods else set()))
        routes.append(Route(path, dispatch, methods=methods_all))
    return routes


ERROR_TEXT = {
    400: "Bad request",
    401: "Missing or invalid API token",
    403: "The token's role may not do this",
    404: "Unknown resource",
    409: "Conflict",
    413: "Body larger than MAX_BODY_BYTES",
    422: "Validation failed (every bad field named)",
    429: "Rate limited (see Retry-After)",
    503: "Not ready",
}


def _require_discriminators(schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """Make each variant of a discriminated union require its tag. Pydantic refuses a variant
    without it (`prompt: {}` is a 422) even when the tag has a default, but leaves it optional
    in the schema; OpenAPI's `discriminator` is only a hint to generators and validators."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            tag = node.get("discriminator", {}).get("propertyName")
            if tag:
                for choice in node.get("oneOf", []):
                    ref = choice.get("$ref", "")
                    variant = defs.get(ref.rsplit("/", 1)[-1]) if ref else choice
                    if variant is not None and tag not in variant.get("required", []):
                        variant["required"] = [tag, *variant.get("required", [])]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def _schema_of(model: type[BaseModel] | dict[str, Any], defs: dict[str, Any], mode: str) -> dict[str, Any]:
    if isinstance(model, dict):
        return model
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)  # type: ignore[arg-type]
    for name, sub in schema.pop("$defs", {}).items():
        defs[name] = sub
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS.get(name, PATH_SEGMENT)}


def openapi(endpoints: Iterable[Endpoint], *, title: str, version: str, server: str) -> dict[str, Any]:
    defs: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["success", "errors"],
            "properties": {
                "success": {"type": "boolean", "const": False},
                "errors": {"type": "array", "items": {"type": "string"}},
            },
        }
    }
    paths: dict[str, Any] = defaultdict(dict)
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag], "operationId": ep.handler.__name__}
        params = [_path_param(name) for name in re.findall(r"{(\w+)}", ep.path)]
        params += [
            {"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": q.schema}
            for q in ep.query
        ]
        params += [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}} for h in ep.headers]
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_of(ep.body, defs, "validation")}},
            }
        if ep.roles is not None:
            op["security"] = [{"ApiToken": []}, {"Bearer": []}]
            op["description"] = "Roles: " + ", ".join(sorted(r.value for r in ep.roles))
        if ep.description:
            op["description"] = f"{ep.description}\n\n{op.get('description', '')}".strip()
        data = _schema_of(ep.response, defs, "serialization") if ep.response is not None else {}
        if ep.envelope:
            content_schema: dict[str, Any] = {
                "type": "object",
                "required": ["success", "data"],
                "properties": {"success": {"type": "boolean", "const": True}, "data": data},
            }
        else:
            content_schema = data
        # 202: the inbound call's reply is pending; an escalation call is being placed.
        ok = "202" if ep.method == "POST" and ep.path.endswith(("/inbound", "/call")) else None
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {ep.content_type: {"schema": content_schema}}}
        }
        if ok:
            responses[ok] = {
                "description": "Accepted; the reply is still pending",
                "content": {ep.content_type: {"schema": content_schema}},
            }
        limited = {429} if ep.roles is not None or 429 in ep.errors else set()
        for code in sorted(set(ep.errors) | ({413, 422} if ep.body else set()) | limited):
            responses[str(code)] = {
                "description": ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            if code == 429:
                responses[str(code)]["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
        op["responses"] = responses
        paths[ep.path][ep.method.lower()] = op
    _require_discriminators({"paths": paths, "schemas": defs}, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "paths": dict(paths),
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "ApiToken": {"type": "apiKey", "in": "header", "name": "API-Token"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
