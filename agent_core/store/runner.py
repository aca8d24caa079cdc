"""Run store operations against a sync or an asyncio Redis client.

Store operations are written once, as generators that yield Redis requests (`Cmd`, `Lua`,
`Batch`) and receive their replies (the sans-I/O style of h11): the web process runs them
with `AsyncStore`, workers and the CLI with `Store`. Compose them with `yield from`.
The request types are private to `agent_core.store`; callers see only operations.

A script that queues follow-up work names it (`Lua(..., work=[Work…])`); the runner asks
its `JobFormat` for the writes and passes them after the script's own arguments: a JSON
list of job specs, then their payloads (see lib.lua `jobs_at`).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from agent_core.store.multiplex import MultiplexedRedis
from agent_core.store.scripts import SCRIPTS
from agent_core.store.work import JobFormat, Work, inline_spec

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cmd:
    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", args)


@dataclass(frozen=True, slots=True)
class Lua:
    name: str
    args: tuple[Any, ...]
    work: tuple[Work, ...]

    def __init__(self, name: str, *args: Any, work: Sequence[Work] = ()) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "work", tuple(work))


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent in one round trip (a pipeline, not a transaction)."""

    cmds: tuple[Cmd | Lua, ...]

    def __init__(self, *cmds: Cmd | Lua) -> None:
        object.__setattr__(self, "cmds", cmds)


Request = Cmd | Lua | Batch
Op = Generator[Request, Any, T]


def script_args(req: Lua, jobs: JobFormat | None) -> tuple[Any, ...]:
    """The script's arguments followed, when it queues work, by the job specs and payloads."""
    if not req.work:
        return req.args
    specs: list[str] = []
    payloads: list[bytes] = []
    for work in req.work:
        if work.inline:
            specs.append(json.dumps(inline_spec(work), separators=(",", ":")))
            payloads.append(b"")
            continue
        if jobs is None:
            raise RuntimeError(f"script {req.name} queues work, but this store was given no JobFormat")
        prepared = jobs.prepare(work)
        specs.append(prepared.spec_json(work))
        payloads.append(prepared.payload)
    return (*req.args, "[" + ",".join(specs) + "]", *payloads)


class Store:
    """Runs operations on a sync client (decode_responses=True); `jobs` prepares the jobs
    that writes queue."""

    def __init__(self, client: redis.Redis, jobs: JobFormat | None = None) -> None:
        self.redis = client
        self.jobs = jobs
        self._scripts: dict[str, Script] = {n: client.register_script(src) for n, src in SCRIPTS.items()}

    def _one(self, req: Cmd | Lua, target: Any) -> Any:
        if isinstance(req, Cmd):
            return target.execute_command(*req.args)
        return self._scripts[req.name](args=script_args(req, self.jobs), client=target)

    def run(self, op: Op[T]) -> T:
        try:
            req = next(op)
            while True:
                if isinstance(req, Batch):
                    pipe = self.redis.pipeline(transaction=False)
                    for sub in req.cmds:
                        self._one(sub, pipe)
                    reply: Any = pipe.execute()
                else:
                    reply = self._one(req, self.redis)
                req = op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


# Replies of these commands need no conversion, so they can use the multiplexed connection.
_PLAIN_REPLY = frozenset({"GET", "HGET", "HMGET", "INCR", "HINCRBY"})


class AsyncStore:
    """Runs operations on an asyncio client (decode_responses=True).

    With `fast` (a MultiplexedRedis), scripts and plain reads share one auto-pipelined
    connection; everything else uses the redis-py client.
    """

    def __init__(
        self, client: aioredis.Redis, fast: MultiplexedRedis | None = None, jobs: JobFormat | None = None
    ) -> None:
        self.redis = client
        self.fast = fast
        self.jobs = jobs
        self._scripts: dict[str, AsyncScript] = {n: client.register_script(src) for n, src in SCRIPTS.items()}

    async def run(self, op: Op[T]) -> T:
        try:
            req = next(op)
            while True:
                if isinstance(req, Batch):
                    pipe = self.redis.pipeline(transaction=False)
                    for sub in req.cmds:
                        if isinstance(sub, Cmd):
                            pipe.execute_command(*sub.args)
                        else:
                            await self._scripts[sub.name](args=script_args(sub, self.jobs), client=pipe)
                    reply: Any = await pipe.execute()
                elif self.fast is not None and isinstance(req, Lua):
                    reply = await self.fast.script(SCRIPTS[req.name], *script_args(req, self.jobs))
                elif self.fast is not None and req.args[0] in _PLAIN_REPLY:
                    reply = await self.fast.execute(*req.args)
                elif isinstance(req, Cmd):
                    reply = await self.redis.execute_command(*req.args)  # type: ignore[no-untyped-call]
                else:
                    reply = await self._scripts[req.name](args=script_args(req, self.jobs))
                req = op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
