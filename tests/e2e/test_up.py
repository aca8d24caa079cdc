"""`chatgw up` (what `make run` runs): embedded Redis, web, worker, demo agent, tokens; Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests import procs
from tests.fakes import free_port

pytestmark = pytest.mark.e2e


def read_banner(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(lines)
    raise AssertionError("no banner from chatgw up:\n" + "".join(lines))


def test_up_runs_everything_with_no_keys_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    proc, _ = procs.start_up(tmp_path, port)
    try:
        banner = read_banner(proc)
        base = re.search(r"Base URL:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        admin = re.search(r"Admin token:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        agent_id = re.search(r"Demo agent:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
        assert base == f"http://127.0.0.1:{port}"
        assert "offline" in banner
        r = httpx.post(
            f"{base}/v1/chat/inbound",
            json={"agent_uuid": agent_id, "customer_id": "demo", "content": "hi"},
            headers={"API-Token": admin},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["data"]["reply"]
        redis_url = (tmp_path / "var" / "redis" / "redis.url").read_text().strip()
        assert redis.Redis.from_url(redis_url).config_get("appendonly") == {"appendonly": "yes"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(30)
    assert code == 0
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    assert (tmp_path / "var" / "redis" / "appendonlydir").exists() or (
        tmp_path / "var" / "redis" / "appendonly.aof"
    ).exists()


def test_up_twice_keeps_one_demo_agent_and_the_same_tokens(tmp_path: Path) -> None:
    environ = procs.env(CHATGW_DATA_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    tokens = []
    for _ in range(2):
        proc = subprocess.Popen(
            [str(procs.BIN / "chatgw"), "up", "--port", str(free_port())],
            env=environ,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            banner = read_banner(proc)
            tokens.append(re.search(r"Admin token:\s+(\S+)", banner).group(1))  # type: ignore[union-attr]
            base = re.search(r"Base URL:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
            agents = httpx.get(f"{base}/v1/active_agents", headers={"API-Token": tokens[-1]}).json()
            assert [a["agent_id"] for a in agents] == ["agent_demo"]
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(30) == 0
    assert tokens[0] == tokens[1]
