"""What the web widget's public API needs from Redis beyond agents and sessions: the origins
CORS preflights are answered for, and the key visitor tokens are signed with."""

from __future__ import annotations

import secrets

from agent_core.store import keys
from agent_core.store.runner import Cmd, Op


def origin_allowed_anywhere(origin: str) -> Op[bool]:
    """Whether some enabled widget allows `origin` (lua/agent_save.lua keeps the count)."""
    found = yield Cmd("HEXISTS", keys.WIDGET_ORIGINS, origin)
    return bool(found)


def signing_key() -> Op[str]:
    """The install's visitor-token key: made once, shared by every web process, kept across
    restarts (SECRET_KEY defaults to a new value per process, which would log visitors out)."""
    yield Cmd("SET", keys.WIDGET_SIGNING_KEY, secrets.token_urlsafe(32), "NX")
    key = yield Cmd("GET", keys.WIDGET_SIGNING_KEY)
    return str(key)
