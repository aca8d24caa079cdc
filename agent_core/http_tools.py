"""An agent's custom HTTP tools (SPEC §3 `tools`): the model calls them like built-ins.

Arguments are validated against the tool's JSON Schema before any request is made;
every failure (bad arguments, timeout, non-2xx, unreachable) becomes an `error: ...`
result the model can read and recover from, never an exception that ends the turn.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import httpx

from agent_core.llm.base import ToolSpec
from agent_core.models import Agent, Session, ToolConfig
from agent_core.tools import BuiltinTool, ToolArgumentError, ToolContext


def _validate(config: ToolConfig, args: dict[str, Any]) -> None:
    import jsonschema  # loaded by the first custom tool call, not by every process

    validator = jsonschema.Draft202012Validator(config.parameters)
    errors = sorted(validator.iter_errors(args), key=lambda e: list(e.absolute_path))
    if errors:
        parts = [f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}" for e in errors[:5]]
        raise ToolArgumentError("; ".join(parts))


def call(http: httpx.Client, config: ToolConfig, ctx: ToolContext, args: dict[str, Any]) -> str:
    _validate(config, args)
    headers = {"User-Agent": "chat-agent-gateway", **config.headers, "X-Chat-Session-Id": ctx.session.id}
    request: dict[str, Any] = {"headers": headers, "timeout": config.timeout_s}
    if config.method in ("GET", "DELETE"):
        request["params"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}
    else:
        request["json"] = args
    try:
        response = http.request(config.method, config.url, **request)
    except httpx.TimeoutException:
        return f"error: the tool did not answer within {config.timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"error: could not reach the tool ({exc.__class__.__name__})"
    body = response.text
    if not response.is_success:
        return f"error: the tool answered HTTP {response.status_code}: {body}"
    return body


def _offer(config: ToolConfig, agent: Agent, session: Session) -> ToolSpec:
    return ToolSpec(config.name, config.description or config.name, config.parameters)


def _run(http: httpx.Client, config: ToolConfig, ctx: ToolContext, args: dict[str, Any]) -> str:
    return call(http, config, ctx, args)


def registry(agent: Agent, http: httpx.Client) -> dict[str, BuiltinTool]:
    """The agent's custom tools in the same shape as the built-ins."""
    return {t.name: BuiltinTool(t.name, partial(_offer, t), partial(_run, http, t)) for t in agent.tools}
