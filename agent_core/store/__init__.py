"""Redis-backed storage: agents, sessions, messages, tokens, knowledge documents, customer
memory, delivery records, the event outbox and follow-up work.

Operations speak the domain; key names, Lua scripts and the raw request types (`Cmd`,
`Lua`, `Batch`) stay inside this package. Run an operation with `Store.run` (sync) or
`AsyncStore.run` (asyncio).
"""

from agent_core.store import (
    agents,
    calls,
    customers,
    documents,
    health,
    limits,
    logins,
    memory,
    messages,
    notices,
    outbound,
    outbox,
    sessions,
    tasks,
    tokens,
    widgets,
)
from agent_core.store.runner import AsyncStore, Op, Store
from agent_core.store.sessions import (
    Change,
    CommitResult,
    Contention,
    IngestResult,
    IngestStatus,
    SessionFilter,
    Updated,
    WriteStatus,
)
from agent_core.store.work import JobFormat, PreparedJob, Task, Work

__all__ = [
    "AsyncStore",
    "Change",
    "CommitResult",
    "Contention",
    "IngestResult",
    "IngestStatus",
    "JobFormat",
    "Op",
    "PreparedJob",
    "SessionFilter",
    "Store",
    "Task",
    "Updated",
    "Work",
    "WriteStatus",
    "agents",
    "calls",
    "customers",
    "documents",
    "health",
    "limits",
    "logins",
    "memory",
    "messages",
    "notices",
    "outbound",
    "outbox",
    "sessions",
    "tasks",
    "tokens",
    "widgets",
]
