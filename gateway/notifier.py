"""Redis pub/sub fanned out to waiting requests and SSE streams, one subscription per channel
per web process.

Workers publish a turn notice when a turn stores a reply or ends; `POST /v1/chat/inbound`
waits on a future for its message instead of polling. A waiter is registered before the
store is checked once, so a reply that lands in between is never missed. Live notices
(every new message and session change) are only subscribed to while an SSE stream is
open, so a process that streams nothing does not parse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from agent_core.store import notices

log = logging.getLogger("gateway.notifier")


@dataclass(eq=False)
class TurnWaiter:
    session_id: str
    seq: int
    future: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def offer(self, notice: dict[str, Any]) -> None:
        if self.future.done():
            return
        answered = int(notice.get("answered_upto") or 0)
        if notice.get("reply") is not None and answered >= self.seq:
            self.future.set_result(notice)
        elif notice.get("final") and int(notice.get("settled_upto") or 0) >= self.seq:
            # The turn ended having settled this message without a reply (e.g. a takeover);
            # a final notice of an earlier turn (settled_upto < seq) says nothing about it.
            self.future.set_result({**notice, "reply": None})


class _Channel:
    """One subscription with reconnects; `ready` is set while subscribed."""

    def __init__(self, client: aioredis.Redis, name: str, handle: Any) -> None:
        self.client = client
        self.name = name
        self.handle = handle
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"notify:{name}")

    async def _run(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.name)
                self.ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.handle(message["data"])
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception:  # Redis restart or network blip: resubscribe
                log.warning("subscription to %s lost; resubscribing", self.name, exc_info=True)
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Notifier:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._waiters: dict[str, set[TurnWaiter]] = defaultdict(set)
        self._streams: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._turns: _Channel | None = None
        self._live: _Channel | None = None

    async def start(self) -> None:
        self._turns = _Channel(self.client, notices.TURNS, self._dispatch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._turns.ready.wait(), timeout=5)

    async def stop(self) -> None:
        for channel in (self._turns, self._live):
            if channel is not None:
                await channel.stop()

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            notice = json.loads(raw)
        except ValueError:
            return
        sid = notice.get("session_id")
        if not isinstance(sid, str):
            return
        if notice.get("type") == "turn":
            for waiter in list(self._waiters.get(sid, ())):
                waiter.offer(notice)
        for queue in list(self._streams.get(sid, ())) + list(self._streams.get("*", ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(notice)

    def waiter(self, session_id: str, seq: int) -> TurnWaiter:
        waiter = TurnWaiter(session_id, seq)
        self._waiters[session_id].add(waiter)
        return waiter

    def forget(self, waiter: TurnWaiter) -> None:
        waiters = self._waiters.get(waiter.session_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(waiter.session_id, None)

    async def subscribe(self, session_id: str) -> asyncio.Queue[dict[str, Any]]:
        """Notices for one session ('*' for all), for Server-Sent Events."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._streams[session_id].add(queue)
        if self._live is None:
            self._live = _Channel(self.client, notices.LIVE, self._dispatch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._live.ready.wait(), timeout=5)
        return queue

    async def unsubscribe(self, session_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        streams = self._streams.get(session_id)
        if streams is not None:
            streams.discard(queue)
            if not streams:
                self._streams.pop(session_id, None)
        if not self._streams and self._live is not None:
            live, self._live = self._live, None
            await live.stop()
