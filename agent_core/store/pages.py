"""Cursor pagination over a sorted set of ids in creation order (agents, documents)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from agent_core.store.runner import Cmd, Op


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


def in_creation_order(
    index: str,
    load: Callable[[list[str]], Op[list[T | None]]],
    keep: Callable[[T], bool],
    *,
    limit: int,
    cursor: str | None,
) -> Op[tuple[list[T], str | None]]:
    """Up to `limit` items of `index` that `keep` accepts; the cursor is the last id of the
    previous page (ValueError for one this index never held)."""
    start = 0
    if cursor:
        rank = yield Cmd("ZRANK", index, cursor)
        if rank is None:
            raise ValueError("unknown cursor")
        start = int(rank) + 1
    total = int((yield Cmd("ZCARD", index)))
    out: list[T] = []
    while len(out) < limit and start < total:
        ids = yield Cmd("ZRANGE", index, start, start + limit * 2 - 1)
        if not ids:
            break
        for item in (yield from load(list(ids))):
            start += 1
            if item is None or not keep(item):
                continue
            out.append(item)
            if len(out) >= limit:
                break
    return out, (out[-1].id if out and start < total else None)
