"""Redis-backed storage for agents, sessions, messages and tokens."""

from agent_core.store import agents, keys, messages, sessions, tokens
from agent_core.store.runner import AsyncStore, Batch, Cmd, Lua, Op, Store
from agent_core.store.sessions import CommitResult, IngestResult, SessionFilter, TurnJob

__all__ = [
    "AsyncStore",
    "Batch",
    "Cmd",
    "CommitResult",
    "IngestResult",
    "Lua",
    "Op",
    "SessionFilter",
    "Store",
    "TurnJob",
    "agents",
    "keys",
    "messages",
    "sessions",
    "tokens",
]
