"""Console logins (SPEC §10): a login is created when an operator signs in with a token and
deleted on logout, so a copied cookie stops working; it expires on its own after
CONSOLE_SESSION_S. It keeps the token's digest (never the token) and the CSRF token."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from agent_core.models import now_iso
from agent_core.store import keys
from agent_core.store.runner import Cmd, Op


@dataclass(frozen=True, slots=True)
class Login:
    id: str
    token_digest: str
    csrf: str
    created_at: str


def open_login(token_digest: str, ttl_s: int) -> Op[Login]:
    login = Login(
        id=secrets.token_urlsafe(24),
        token_digest=token_digest,
        csrf=secrets.token_urlsafe(24),
        created_at=now_iso(),
    )
    body = {"token_digest": login.token_digest, "csrf": login.csrf, "created_at": login.created_at}
    yield Cmd("SET", keys.console_login(login.id), json.dumps(body), "EX", max(1, int(ttl_s)))
    return login


def get(login_id: str) -> Op[Login | None]:
    raw = yield Cmd("GET", keys.console_login(login_id))
    if not raw:
        return None
    d = json.loads(raw)
    return Login(id=login_id, token_digest=d["token_digest"], csrf=d["csrf"], created_at=d["created_at"])


def close(login_id: str) -> Op[None]:
    yield Cmd("DEL", keys.console_login(login_id))
