"""A worker killed mid-turn: its turn is picked up again and the message answered exactly once."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import procs
from tests.fakes import FakeLLM, FakeOpenAIServer, completion
from tests.helpers import eventually


@pytest.fixture
def llm_server() -> Any:
    release = threading.Event()
    llm = FakeLLM()

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        if len(llm.requests) == 1:
            release.wait(60)  # the first worker is killed while waiting here
        return completion("the one answer")

    llm.handler = handler
    with FakeOpenAIServer(llm) as server:
        yield server
        release.set()


def test_killed_worker_turn_is_answered_once_by_the_next_worker(
    client: TestClient, admin: dict[str, str], redis_url: str, llm_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    agent = client.post("/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    environ = procs.env(
        REDIS_URL=redis_url, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=llm_server.base_url, TURN_LEASE_S="2"
    )
    first = procs.start("chatgw worker --concurrency 1", environ, tmp_path)
    try:
        r = client.post(
            "/v1/chat/inbound?wait=0",
            json={"agent_uuid": agent["id"], "customer_id": "c", "content": "hi"},
            headers=admin,
        )
        sid = r.json()["data"]["session_id"]
        eventually(lambda: len(llm_server.llm.requests) == 1, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = procs.start("chatgw worker --concurrency 1", environ, tmp_path)
    try:

        def replies() -> list[dict[str, Any]]:
            items = client.get(f"/v1/chat/session/{sid}/messages", headers=admin).json()["data"]["items"]
            return [m for m in items if m["role"] == "agent"]

        eventually(replies, timeout=60)
        eventually(lambda: client.get("/readyz").json()["data"]["turns_pending"] == 0, timeout=20)
        assert [m["text"] for m in replies()] == ["the one answer"]
        assert len(llm_server.llm.requests) == 2
    finally:
        procs.stop(second)
