"""Redis key names (the Lua scripts build the same names from the `gw:` prefix)."""

from __future__ import annotations

P = "gw:"
TURNS_PENDING = P + "turns:pending"
TASKS = P + "tasks"
ROUTE = P + "route"
AGENTS = P + "agents"
AGENT_NUM = P + "agentnum"
TOKENS = P + "tokens"
# Turn notices (waiting requests) and live notices (new messages, session changes, for SSE)
# are separate channels so a web process only parses live traffic while it streams it.
NOTIFY_TURNS = P + "notify:turns"
NOTIFY_LIVE = P + "notify:live"
WORKERS_SEEN = P + "workers:seen"
COUNTERS = P + "counters"


def session(sid: str) -> str:
    return f"{P}s:{sid}"


def messages(sid: str) -> str:
    return f"{P}m:{sid}"


def open_sessions(agent_id: str) -> str:
    return f"{P}open:{agent_id}"


def index(scope: str, name: str) -> str:
    """`scope` is an agent id or `*`; `name` is `all` or `field:value`."""
    return f"{P}ix:{scope}:{name}"


def stats(scope: str) -> str:
    return f"{P}stats:{scope}"


def agent(agent_id: str) -> str:
    return f"{P}agent:{agent_id}"


def agent_runtime(agent_id: str) -> str:
    return f"{P}agentrt:{agent_id}"


def token(digest: str) -> str:
    return f"{P}token:{digest}"


def dedupe(namespace: str, value: str) -> str:
    return f"{P}dedupe:{namespace}:{value}"


def turn_lock(sid: str) -> str:
    return f"{P}turn:lock:{sid}"


def channel_message(channel_message_id: str) -> str:
    return f"{P}cmid:{channel_message_id}"
