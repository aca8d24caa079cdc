"""The Procfile's web and worker processes, on the embedded Redis, driven over HTTP."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests import procs
from tests.fakes import FakeLLM, FakeOpenAIServer, free_port
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


def test_procfile_web_and_worker_hold_a_conversation(tmp_path: Path) -> None:
    port = str(free_port())
    llm = FakeLLM()
    with FakeOpenAIServer(llm) as server:
        environ = procs.env(
            PORT=port,
            CHATGW_DATA_DIR=str(tmp_path / "var"),
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=server.base_url,
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        )
        cmds = procs.procfile()
        web = procs.start(cmds["web"], environ, tmp_path)
        worker = procs.start(cmds["worker"], environ, tmp_path)
        base = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(base + "/healthz", proc=web)
            out = procs.chatgw(
                "tokens", "create", "--name", "ops@example.com", "--role", "admin", environ=environ, cwd=tmp_path
            )
            token = out.strip().splitlines()[-1]
            h = {"API-Token": token}
            agent = httpx.post(base + "/v1/agents", json={"name": "E2E"}, headers=h).json()["data"]
            r = httpx.post(
                base + "/v1/chat/inbound",
                json={"agent_uuid": agent["id"], "customer_id": "e2e-1", "content": "Hello from e2e"},
                headers=h,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            data: dict[str, Any] = r.json()["data"]
            assert data["reply"] == "echo: Hello from e2e"
            eventually(lambda: httpx.get(base + "/readyz").status_code == 200, timeout=20)
            msgs = httpx.get(base + f"/v1/chat/session/{data['session_id']}/messages", headers=h).json()["data"][
                "items"
            ]
            assert [m["role"] for m in msgs] == ["customer", "agent"]
            assert llm.requests[0]["messages"][-1] == {"role": "user", "content": "Hello from e2e"}
        finally:
            assert procs.stop(worker) == 0
            # uvicorn re-raises SIGTERM after its graceful shutdown, so "killed by SIGTERM" is clean.
            assert procs.stop(web) in (0, -signal.SIGTERM)
            url_file = tmp_path / "var" / "redis" / "redis.url"
            if url_file.exists():
                client = redis.Redis.from_url(url_file.read_text().strip())
                try:
                    client.shutdown(nosave=True)
                except redis.exceptions.ConnectionError:
                    pass
