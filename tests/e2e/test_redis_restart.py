"""Redis restarted under running web and worker processes (appendonly): nothing lost, nothing twice."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli.redis_server import EmbeddedRedis
from tests import procs
from tests.fakes import free_port
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


def test_conversation_survives_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=True).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = procs.env(REDIS_URL=server.url, PORT=str(port), PUBLIC_BASE_URL=base)
    cmds = procs.procfile()
    web = procs.start(cmds["web"], environ, tmp_path)
    worker = procs.start(cmds["worker"], environ, tmp_path)
    try:
        procs.wait_http(base + "/healthz", proc=web)
        token = (
            procs.chatgw("tokens", "create", "--name", "ops", "--role", "admin", environ=environ, cwd=tmp_path)
            .strip()
            .splitlines()[-1]
        )
        h = {"API-Token": token}
        agent = httpx.post(base + "/v1/agents", json={"name": "A"}, headers=h).json()["data"]

        def say(text: str) -> dict[str, Any]:
            r = httpx.post(
                base + "/v1/chat/inbound",
                json={"agent_uuid": agent["id"], "customer_id": "c", "content": text},
                headers=h,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            return r.json()["data"]  # type: ignore[no-any-return]

        first = say("before the restart")
        assert first["reply"]
        server.stop()  # SHUTDOWN: appendonly flushed
        server.start()
        second = eventually(lambda: _try(say, "after the restart"), timeout=30)
        assert second["session_id"] == first["session_id"] and second["reply"]
        msgs = httpx.get(base + f"/v1/chat/session/{first['session_id']}/messages", headers=h).json()["data"]["items"]
        assert [m["role"] for m in msgs] == ["customer", "agent", "customer", "agent"]
    finally:
        assert procs.stop(worker) == 0
        assert procs.stop(web) in (0, -signal.SIGTERM)
        server.stop()


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (AssertionError, httpx.HTTPError):
        return None
