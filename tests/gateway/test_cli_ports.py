"""`chatgw web` and `chatgw up` on a port another program holds: they refuse before starting
anything, name how to choose the port (PORT, or --port when that chose it) and offer one that is free."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import procs


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def chatgw(*args: str, environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(procs.BIN / "chatgw"), *args], env=environ, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def free_suggestion(pattern: str, stderr: str, taken: int) -> int:
    match = re.search(pattern, stderr)
    assert match, stderr
    port = int(match.group(1))
    assert port != taken
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    return port


def test_web_on_a_taken_port_names_port_and_a_free_one(taken_port: int, redis_url: str, tmp_path: Path) -> None:
    environ = procs.env(REDIS_URL=redis_url, HOST="127.0.0.1", PORT=str(taken_port))
    out = chatgw("web", environ=environ, cwd=tmp_path)
    assert out.returncode == 2
    assert f"chatgw: port {taken_port} on 127.0.0.1 is already in use by another program;" in out.stderr
    free_suggestion(r"choose another port with PORT, e\.g\. PORT=(\d+) chatgw web$", out.stderr.strip(), taken_port)


def test_up_on_a_taken_port_refuses_before_starting_redis(taken_port: int, tmp_path: Path) -> None:
    environ = procs.env(CHATGW_DATA_DIR=str(tmp_path / "var"), PORT=str(taken_port))
    out = chatgw("up", environ=environ, cwd=tmp_path)
    assert out.returncode == 2
    assert f"port {taken_port} on 127.0.0.1 is already in use" in out.stderr
    port = free_suggestion(r"e\.g\. PORT=(\d+) make run \(or chatgw up --port (\d+)\)", out.stderr, taken_port)
    assert f"chatgw up --port {port})" in out.stderr
    assert not (tmp_path / "var" / "redis").exists()
    assert "Chat Agent Gateway is up" not in out.stdout


def test_a_port_chosen_with_the_flag_is_corrected_with_the_flag(taken_port: int, tmp_path: Path) -> None:
    environ = procs.env(CHATGW_DATA_DIR=str(tmp_path / "var"))
    out = chatgw("up", "--port", str(taken_port), environ=environ, cwd=tmp_path)
    assert out.returncode == 2
    free_suggestion(r"choose another port with --port, e\.g\. chatgw up --port (\d+)", out.stderr, taken_port)
    assert "PORT=" not in out.stderr
