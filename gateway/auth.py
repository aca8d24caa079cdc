"""API tokens: `API-Token: <token>` or `Authorization: Bearer <token>`, roles checked per route."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from starlette.requests import Request

from agent_core.store import AsyncStore, Op, tokens
from agent_core.store.tokens import TokenRecord, TokenRole
from gateway.errors import Forbidden, Unauthorized

ADMIN = frozenset({TokenRole.admin})
OPERATOR = frozenset({TokenRole.admin, TokenRole.operator})
ANY = frozenset({TokenRole.admin, TokenRole.operator, TokenRole.api})


def presented_token(request: Request) -> str | None:
    token = request.headers.get("api-token")
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class TokenCache:
    """Token lookups cached for a few seconds per process (a revoke takes effect within TTL)."""

    def __init__(self, store: AsyncStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}

    async def lookup(self, token: str) -> TokenRecord | None:
        return await self._cached(token, tokens.lookup)

    async def lookup_digest(self, token_digest: str) -> TokenRecord | None:
        """The same, by the token's digest (what a console login keeps)."""
        return await self._cached("#" + token_digest, lambda key: tokens.lookup_digest(key[1:]))

    async def _cached(self, key: str, op: Callable[[str], Op[TokenRecord | None]]) -> TokenRecord | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        record = await self.store.run(op(key))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl_s, record)
        return record


async def authenticate(request: Request, roles: Iterable[TokenRole]) -> TokenRecord:
    token = presented_token(request)
    if not token:
        raise Unauthorized("missing API token: send an 'API-Token' header (or 'Authorization: Bearer')")
    cache: TokenCache = request.app.state.tokens
    record = await cache.lookup(token)
    if record is None:
        raise Unauthorized("invalid API token")
    allowed = frozenset(roles)
    if record.role not in allowed:
        need = " or ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"this token's role '{record.role.value}' may not do that (needs {need})")
    request.state.token = record
    return record
