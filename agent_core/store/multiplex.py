"""One auto-pipelined Redis connection for the web process's hot path.

Measured on this hardware class, redis-py's asyncio client spends ≈50 µs of CPU per
command sequentially and ≈90 µs under concurrency (connection pool churn), more than the
rest of a webhook. Every request here sends one Lua script, and Redis runs commands one
at a time anyway, so commands from all concurrent requests share one connection: written
together once per event-loop turn, replies read in order with hiredis's C parser
(≈6 µs per command). Only commands whose replies need no conversion use it (scripts, GET,
HGET); everything else stays on redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

log = logging.getLogger("agent_core.store.multiplex")


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            data = b"1" if arg else b"0"
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace", replyError=ResponseError)
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.buffer: list[bytes] = []
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, ResponseError):
                waiter.set_exception(NoScriptError(str(reply)) if str(reply).startswith("NOSCRIPT") else reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.buffer.append(payload)
        if not self.flush_scheduled:
            # Commands issued in the same event-loop turn go out in one write.
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return waiter

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.buffer and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()


class MultiplexedRedis:
    """A lazily (re)connected, shared, pipelined connection to the Redis at `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("the multiplexed connection supports redis:// and rediss:// URLs")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.ssl = parts.scheme == "rediss"
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        self.db = int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() else 0
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._shas: dict[str, str] = {}

    async def _connection(self) -> _Protocol:
        proto = self._protocol
        if proto is not None and not proto.closed.done():
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            proto = self._protocol
            if proto is not None and not proto.closed.done():
                return proto
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, self.host, self.port, ssl=self.ssl or None)
            setup = []
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                setup.append(proto.send(_encode(("AUTH", *auth))))
            if self.db:
                setup.append(proto.send(_encode(("SELECT", self.db))))
            await asyncio.gather(*setup)
            self._protocol = proto
            return proto

    async def execute(self, *args: Any) -> Any:
        """Send one command; a connection that is already dead is replaced once before giving up."""
        for attempt in (1, 2):
            proto = await self._connection()
            if proto.transport is None or proto.transport.is_closing():
                self._protocol = None
                if attempt == 2:
                    raise RedisConnectionError("Redis connection is closing")
                continue
            return await proto.send(_encode(args))
        raise AssertionError("unreachable")

    async def script(self, source: str, *args: Any) -> Any:
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, 0, *args)
        except NoScriptError:
            # A restarted (or new) Redis has an empty script cache.
            await self.execute("SCRIPT", "LOAD", source)
            return await self.execute("EVALSHA", sha, 0, *args)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
            await self._protocol.closed
        self._protocol = None
