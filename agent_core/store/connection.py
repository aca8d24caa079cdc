"""Redis clients with the retry policy every process uses.

After a Redis restart or failover, pooled connections are dead; a command on one fails
before reaching the server. Retrying it on a fresh connection (with backoff) lets web and
worker processes ride through a restart instead of answering 500s.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RETRY_ERRORS = [RedisConnectionError, RedisTimeoutError]


def _options() -> dict[str, Any]:
    return {"health_check_interval": 30, "socket_keepalive": True}


def sync_client(url: str, *, decode: bool = True, max_connections: int = 2000) -> redis.Redis:
    from redis.retry import Retry

    # A worker process runs many RQ workers on threads, each holding a connection in BLPOP.
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        max_connections=max_connections,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 6),
        retry_on_error=RETRY_ERRORS,
        **_options(),
    )


def async_client(url: str, *, max_connections: int = 512) -> aioredis.Redis:
    from redis.asyncio.retry import Retry

    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 6),
        retry_on_error=RETRY_ERRORS,
        **_options(),
    )
