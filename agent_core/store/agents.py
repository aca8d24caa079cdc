"""Agent storage: the agent document, its routing entries and the runtime hash Lua reads."""

from __future__ import annotations

import json
from dataclasses import dataclass

from agent_core.models import (
    Agent,
    AgentSpec,
    AgentStatus,
    OnHelpRequested,
    new_id,
    new_public_key,
    now_iso,
    now_ms,
)
from agent_core.store import keys
from agent_core.store.pages import in_creation_order
from agent_core.store.runner import Batch, Cmd, Lua, Op


def routes_of(agent: AgentSpec) -> list[str]:
    """Addresses that route inbound Twilio traffic to this agent (none once archived)."""
    if agent.status is AgentStatus.archived:
        return []
    return [*agent.channels.numbers, *routes_to(None, agent.channels.messaging_service_sid)]


def routes_to(address: str | None, messaging_service_sid: str | None) -> tuple[str, ...]:
    """The routing entries an inbound message sent to `address` (through a Messaging
    Service) is looked up by, in order."""
    out = [address] if address else []
    if messaging_service_sid:
        out.append("mss:" + messaging_service_sid)
    return tuple(out)


def key_routes(agent: AgentSpec) -> list[str]:
    """The widget's public key routes to its agent while it has one (archived or disabled
    too, so the widget can say the agent is offline rather than that the key is unknown)."""
    return ["pk:" + agent.widget.public_key] if agent.widget.public_key else []


def widget_origins(agent: AgentSpec) -> list[str]:
    """Origins whose CORS preflights are answered (an enabled widget's allowed_origins)."""
    return list(agent.widget.allowed_origins) if agent.widget.enabled else []


def _keyed(spec: AgentSpec, current: Agent | None) -> AgentSpec:
    """The spec with the widget's public key: the current one kept, a new one made when the
    widget is first enabled (a spec never chooses it: the API refuses one in a body)."""
    key = current.widget.public_key if current is not None else None
    if key is None and spec.widget.enabled:
        key = new_public_key()
    if key == spec.widget.public_key:
        return spec
    return spec.model_copy(update={"widget": spec.widget.model_copy(update={"public_key": key})})


def _runtime(agent: Agent) -> list[str]:
    return [
        "status",
        agent.status.value,
        "num",
        str(agent.chat_agent_id),
        "initial_state",
        agent.initial_state,
        "hold",
        "1" if agent.on_help_requested is OnHelpRequested.hold else "0",
        "events",
        ",".join(agent.webhook.events) if agent.webhook else "",
    ]


@dataclass(frozen=True, slots=True)
class SaveResult:
    status: str  # ok | exists | conflict | route_taken
    agent: Agent | None = None
    route: str | None = None
    owner: str | None = None


def _save(agent: Agent, previous_raw: str | None, previous: Agent | None) -> Op[SaveResult]:
    raw = agent.model_dump_json()
    params = {
        "id": agent.id,
        "expect": previous_raw or "",
        "json": raw,
        "rt": _runtime(agent),
        "routes_old": [*routes_of(previous), *key_routes(previous)] if previous else [],
        "routes_new": [*routes_of(agent), *key_routes(agent)],
        "origins_old": widget_origins(previous) if previous else [],
        "origins_new": widget_origins(agent),
        "created_ms": now_ms(),
    }
    reply = yield Lua("agent_save", json.dumps(params))
    if reply[0] == "route_taken":
        return SaveResult("route_taken", route=reply[1], owner=reply[2])
    if reply[0] != "ok":
        return SaveResult(reply[0])
    return SaveResult("ok", agent=agent)


def create(spec: AgentSpec, agent_id: str | None = None) -> Op[SaveResult]:
    num = yield Cmd("INCR", keys.AGENT_NUM)
    at = now_iso()
    agent = Agent(
        **_keyed(spec, None).model_dump(),
        id=agent_id or new_id("agent"),
        chat_agent_id=int(num),
        created_at=at,
        updated_at=at,
    )
    return (yield from _save(agent, None, None))


def get_raw(agent_id: str) -> Op[str | None]:
    raw = yield Cmd("GET", keys.agent(agent_id))
    return raw  # type: ignore[no-any-return]


def get(agent_id: str) -> Op[Agent | None]:
    raw = yield from get_raw(agent_id)
    return Agent.model_validate_json(raw) if raw else None


_PARSED: dict[str, tuple[str, Agent]] = {}


def get_cached(agent_id: str) -> Op[Agent | None]:
    """Like `get`, reusing this process's parsed Agent while its stored JSON is unchanged
    (a turn reads its agent every round; validating the whole document each time is waste)."""
    raw = yield from get_raw(agent_id)
    if not raw:
        _PARSED.pop(agent_id, None)
        return None
    hit = _PARSED.get(agent_id)
    if hit is not None and hit[0] == raw:
        return hit[1]
    agent = Agent.model_validate_json(raw)
    if len(_PARSED) > 10_000:
        _PARSED.clear()
    _PARSED[agent_id] = (raw, agent)
    return agent


def replace(agent_id: str, spec: AgentSpec) -> Op[SaveResult]:
    """Store `spec` as the agent's new configuration (identity and created_at kept)."""
    for _ in range(10):
        raw = yield from get_raw(agent_id)
        if not raw:
            return SaveResult("missing")
        current = Agent.model_validate_json(raw)
        agent = Agent(
            **_keyed(spec, current).model_dump(),
            id=current.id,
            chat_agent_id=current.chat_agent_id,
            created_at=current.created_at,
            updated_at=now_iso(),
        )
        result = yield from _save(agent, raw, current)
        if result.status != "conflict":
            return result
    return SaveResult("conflict")


def by_public_key(public_key: str) -> Op[Agent | None]:
    """The agent whose widget has this public key (None for an unknown or replaced key)."""
    agent_id = yield Cmd("HGET", keys.ROUTE, "pk:" + public_key)
    if not agent_id:
        return None
    return (yield from get_cached(agent_id))


def rotate_widget_key(agent_id: str) -> Op[SaveResult]:
    """Replace the widget's public key (the old one stops working at once)."""
    for _ in range(10):
        raw = yield from get_raw(agent_id)
        if not raw:
            return SaveResult("missing")
        current = Agent.model_validate_json(raw)
        widget = current.widget.model_copy(update={"public_key": new_public_key()})
        agent = current.model_copy(update={"widget": widget, "updated_at": now_iso()})
        result = yield from _save(agent, raw, current)
        if result.status != "conflict":
            return result
    return SaveResult("conflict")


def list_page(*, limit: int, cursor: str | None, status: str | None = None) -> Op[tuple[list[Agent], str | None]]:
    """Agents in creation order; the cursor is the last agent id of the previous page."""
    return (
        yield from in_creation_order(
            keys.AGENTS,
            _load,
            lambda a: not status or a.status.value == status,
            limit=limit,
            cursor=cursor,
        )
    )


def _load(agent_ids: list[str]) -> Op[list[Agent | None]]:
    raws = yield Batch(*(Cmd("GET", keys.agent(i)) for i in agent_ids))
    return [Agent.model_validate_json(r) if r else None for r in raws]


def all_ids() -> Op[list[str]]:
    ids = yield Cmd("ZRANGE", keys.AGENTS, 0, -1)
    return list(ids)


def get_many(agent_ids: list[str]) -> Op[list[Agent]]:
    if not agent_ids:
        return []
    found = yield from _load(agent_ids)
    return [a for a in found if a is not None]
