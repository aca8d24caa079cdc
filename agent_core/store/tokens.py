"""API tokens: stored as SHA-256 digests (tokens are 256-bit random, so no slow hash is needed)."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

from agent_core.models import new_id, now_iso
from agent_core.store import keys
from agent_core.store.runner import Batch, Cmd, Op

TOKEN_PREFIX = "cgw_"


class TokenRole(StrEnum):
    admin = "admin"
    operator = "operator"
    api = "api"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    role: TokenRole
    created_at: str

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "name": self.name, "role": self.role.value, "created_at": self.created_at})

    @classmethod
    def from_json(cls, raw: str) -> TokenRecord:
        d = json.loads(raw)
        return cls(id=d["id"], name=d["name"], role=TokenRole(d["role"]), created_at=d["created_at"])


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(name: str, role: TokenRole) -> Op[tuple[str, TokenRecord]]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(id=new_id("tok"), name=name, role=role, created_at=now_iso())
    d = digest(token)
    yield Batch(Cmd("SET", keys.token(d), record.to_json()), Cmd("HSET", keys.TOKENS, record.id, d))
    return token, record


def lookup(token: str) -> Op[TokenRecord | None]:
    raw = yield Cmd("GET", keys.token(digest(token)))
    return TokenRecord.from_json(raw) if raw else None


def lookup_digest(token_digest: str) -> Op[TokenRecord | None]:
    """The token whose digest this is (a console login keeps the digest, never the token)."""
    raw = yield Cmd("GET", keys.token(token_digest))
    return TokenRecord.from_json(raw) if raw else None


def list_all() -> Op[list[TokenRecord]]:
    ids = yield Cmd("HGETALL", keys.TOKENS)
    if not ids:
        return []
    raws = yield Batch(*(Cmd("GET", keys.token(d)) for d in ids.values()))
    records = [TokenRecord.from_json(r) for r in raws if r]
    return sorted(records, key=lambda r: r.created_at)


def revoke(token_id_or_name: str) -> Op[list[TokenRecord]]:
    """Revoke by token id, or every token with that name; returns what was revoked."""
    ids = yield Cmd("HGETALL", keys.TOKENS)
    revoked: list[TokenRecord] = []
    for tid, d in ids.items():
        raw = yield Cmd("GET", keys.token(d))
        record = TokenRecord.from_json(raw) if raw else None
        if tid == token_id_or_name or (record and record.name == token_id_or_name):
            yield Batch(Cmd("DEL", keys.token(d)), Cmd("HDEL", keys.TOKENS, tid))
            if record:
                revoked.append(record)
    return revoked
