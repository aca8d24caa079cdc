"""Request helpers every API module uses: the store, and the agent or session a request names."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from agent_core.models import Agent, Session
from agent_core.store import AsyncStore, agents, sessions
from gateway.errors import NotFound


def store_of(request: Request) -> AsyncStore:
    return request.app.state.store  # type: ignore[no-any-return]


def session_json(session: Session) -> dict[str, Any]:
    return session.model_dump(mode="json")


async def load_agent(store: AsyncStore, agent_id: str, field: str = "agent_uuid") -> Agent:
    agent = await store.run(agents.get(agent_id))
    if agent is None:
        raise NotFound(f"{field}: no agent with id '{agent_id}'")
    return agent


async def load_session(request: Request) -> Session:
    sid = request.path_params["session_id"]
    session = await store_of(request).run(sessions.get(sid))
    if session is None:
        raise NotFound(f"session_id: no session with id '{sid}'")
    return session
