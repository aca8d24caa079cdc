"""`chatgw call` end to end against `chatgw up` with no keys: a customer texting the demo agent
agrees to a call, `chatgw chat` says a call was placed (dev outbox) and how to answer it,
`chatgw call CALL_ID` plays the callee through the real signed voice webhooks, and after the
hang-up the call's summary lands in the chat."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.e2e.test_chat import Terminal, chat
from tests.e2e.test_up import read_banner
from tests.fakes import free_port

pytestmark = pytest.mark.e2e


def test_chatgw_call_plays_the_callee_and_the_summary_comes_back_into_the_chat(tmp_path: Path) -> None:
    port = free_port()
    up, environ = procs.start_up(tmp_path, port)
    try:
        banner = read_banner(up)
        base = f"http://127.0.0.1:{port}"
        operator = {"API-Token": re.search(r"Operator token:\s+(\S+)", banner).group(1)}  # type: ignore[union-attr]
        term = Terminal(chat(environ=environ, cwd=tmp_path))
        try:
            term.expect(r"^Texting ")
            term.type("My order arrived broken")
            term.expect(r"^agent> \S")
            term.type("yes, call me please")
            hint = term.expect(r"chatgw call (call_\S+)\)$")
            call_id = re.search(r"chatgw call (call_\S+)\)$", hint).group(1)  # type: ignore[union-attr]
            term.expect(r"^agent> I'm calling you now")
            callee = subprocess.run(
                [str(procs.BIN / "chatgw"), "call", call_id],
                input="I want a replacement for the broken order\n\nok bye\n",
                env=environ,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert callee.returncode == 0, callee.stderr
            out = callee.stdout
            assert re.search(r"^agent> Hi, this is Demo Support, calling about your chat", out, re.M), out
            assert "you> I want a replacement" in out
            assert "didn't catch that" in out
            assert "Goodbye" in out and "(call ended" in out
            term.expect(r"^agent> Thanks for the call — here is what we agreed: .*replacement", timeout=30)
        finally:
            assert term.proc.stdin is not None
            term.proc.stdin.close()
        call = httpx.get(f"{base}/v1/calls/{call_id}", headers=operator).json()["data"]
        assert call["status"] == "completed" and call["placed"] is False
        assert [t["role"] for t in call["transcript"]][:2] == ["agent", "customer"]
        session = httpx.get(f"{base}/v1/chat/session/{call['session_id']}", headers=operator).json()["data"]
        assert session["metadata"]["context"][-1].startswith("Phone call summary:")
        assert session["calls"][0]["id"] == call_id
        time.sleep(0.1)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(30) == 0
