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

        # An agent on ConversationRelay: `chatgw call` talks over the signed socket.
        admin = {"API-Token": re.search(r"Admin token:\s+(\S+)", banner).group(1)}  # type: ignore[union-attr]
        escalation = {"enabled": True, "from_number": "+15550002222", "voice_transport": "conversation_relay"}
        agent = httpx.post(f"{base}/v1/agents", json={"name": "Relay", "escalation": escalation}, headers=admin)
        agent_id = agent.json()["data"]["id"]
        sid = httpx.post(
            f"{base}/v1/chat/session", json={"agent_uuid": agent_id, "customer_id": "web-1"}, headers=admin
        ).json()["data"]["id"]
        r = httpx.post(f"{base}/v1/chat/session/{sid}/call", json={"to": "+15557650000"}, headers=admin)
        relay_call = r.json()["data"]["id"]
        deadline = time.monotonic() + 20
        while not httpx.get(f"{base}/v1/calls/{relay_call}", headers=admin).json()["data"]["twilio_call_sid"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        callee = subprocess.run(
            [str(procs.BIN / "chatgw"), "call", relay_call],
            input="what are your shipping options\nbye\n",
            env=environ,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert callee.returncode == 0, callee.stderr
        assert "agent> Hi, this is Relay" in callee.stdout, callee.stdout
        assert "(the agent hung up)" in callee.stdout and "(call ended" in callee.stdout
        done = httpx.get(f"{base}/v1/calls/{relay_call}", headers=admin).json()["data"]
        assert done["status"] == "completed"
        assert [t["role"] for t in done["transcript"]][:3] == ["agent", "customer", "agent"]
    finally:
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(30) == 0
