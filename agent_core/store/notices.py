"""Live notices over Redis pub/sub (lossy by design: listeners catch up from the store).

`TURNS` carries turn notices (a reply is stored; a turn is finished: lua/finish_turn.lua)
for waiting requests; `LIVE` carries new messages and session changes (published by the
store scripts) for SSE streams and the terminal chat.
"""

from __future__ import annotations

import json
from typing import Any

from agent_core.store import keys
from agent_core.store.runner import Cmd, Op

TURNS = keys.NOTIFY_TURNS
LIVE = keys.NOTIFY_LIVE


def publish_turn(session_id: str, agent_id: str, **payload: Any) -> Op[None]:
    body = {"type": "turn", "session_id": session_id, "agent_id": agent_id, **payload}
    yield Cmd("PUBLISH", TURNS, json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def publish_typing(session_id: str, who: str) -> Op[None]:
    """An operator is writing in a session's composer (open consoles show it for a few seconds)."""
    body = {"type": "typing", "session_id": session_id, "who": who}
    yield Cmd("PUBLISH", LIVE, json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def publish_replying(session_id: str, agent_id: str) -> Op[None]:
    """A turn is writing a reply for this session (the widget shows "typing…" until the
    turn's final notice)."""
    yield from publish_turn(session_id, agent_id, final=False, typing=True, reply=None)
