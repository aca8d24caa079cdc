"""`chatgw chat` against `chatgw up` on a port of its own, as a developer runs them: the chat
finds the gateway from what its web process recorded under the data dir, signs for the URL the
gateway checks, and prints who is speaking and each change of who answers."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.e2e.test_up import read_banner
from tests.fakes import free_port

pytestmark = pytest.mark.e2e

CUSTOMER = "+15557654321"
OPERATOR = "demo-operator@example.com"


class Terminal:
    """A running `chatgw chat`: lines typed in, lines (stdout and stderr) read back."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        printed = "\n".join(self.seen)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; the chat printed:\n{printed}")


def chat(*args: str, environ: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(procs.BIN / "chatgw"), "chat", "--agent", "agent_demo", "--from", CUSTOMER, *args],
        env=environ,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_chat_finds_the_gateway_on_another_port_and_shows_who_speaks(tmp_path: Path) -> None:
    port = free_port()
    # No PORT or PUBLIC_BASE_URL for the chat: it must find the gateway itself.
    up, environ = procs.start_up(tmp_path, port)
    try:
        banner = read_banner(up)
        base = f"http://127.0.0.1:{port}"
        operator = {"API-Token": re.search(r"Operator token:\s+(\S+)", banner).group(1)}  # type: ignore[union-attr]

        term = Terminal(chat(environ=environ, cwd=tmp_path))
        try:
            term.expect(rf"^Texting .* from {re.escape(CUSTOMER)} at {re.escape(base)}\.")
            term.type("How long do refunds take?")
            term.expect(r"^agent> \S")
            term.expect(r"^ +\(dev outbox: Twilio is not configured, nothing was sent\)$")

            active = httpx.get(
                f"{base}/v1/chat/session/active",
                params={"customer_id": CUSTOMER, "agent_uuid": "agent_demo"},
                headers=operator,
            )
            sid = active.json()["data"]["id"]
            support = f"{base}/v1/chat/session/{sid}/support"
            r = httpx.post(support, json={"command": "takeover", "message": "Hi, this is Dana."}, headers=operator)
            assert r.status_code == 200, r.text
            term.expect(rf"^  \(takeover by {re.escape(OPERATOR)}: a person is answering now\)$")
            term.expect(rf"^operator {re.escape(OPERATOR)}> Hi, this is Dana\.$")

            assert httpx.post(support, json={"command": "end"}, headers=operator).status_code == 200
            term.expect(rf"^  \(handed back to the AI by {re.escape(OPERATOR)}\)$")
            term.type("And shipping?")
            term.expect(r"^agent> \S")
        finally:
            assert term.proc.stdin is not None
            term.proc.stdin.close()
        assert term.proc.wait(30) == 0, "\n".join(term.seen)
        assert not any(line.startswith("agent> Hi, this is Dana") for line in term.seen)

        # --url naming that same gateway signs for it too.
        piped = subprocess.run(
            [str(procs.BIN / "chatgw"), "chat", "--agent", "agent_demo", "--from", "+15550009999", "--url", base],
            input="hello\n",
            env=environ,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert piped.returncode == 0, piped.stderr
        assert re.search(r"^agent> \S", piped.stdout, re.M), piped.stdout

        # A second `up` on the same port says the gateway is already running from here.
        again = subprocess.run(
            [str(procs.BIN / "chatgw"), "up", "--port", str(port)],
            env=environ,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use by the gateway running from this directory" in again.stderr
        assert "use it (chatgw chat finds it), stop it, or choose another port with --port" in again.stderr
    finally:
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(30) == 0
    assert not (tmp_path / "var" / "web.json").exists()
