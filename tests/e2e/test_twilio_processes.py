"""Real web + worker processes: a signed Twilio webhook in, the reply observed at a local fake
Twilio REST server (no respx across processes), its status callback signed and sent back."""

from __future__ import annotations

import signal
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from channels.twilio.forms import status_form
from tests import procs
from tests.channels.twilio.wire import ACCOUNT_SID, AUTH_TOKEN, message_resource, sid, sms_form
from tests.fakes import free_port
from tests.helpers import eventually
from tests.twilio_helpers import sign

pytestmark = pytest.mark.e2e


class FakeTwilio:
    """A few lines of Starlette speaking Twilio's Messages API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.created: list[dict[str, str]] = []

        async def create(request: Request) -> JSONResponse:
            form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
            assert request.headers["authorization"].startswith("Basic ")
            self.created.append(form)
            return JSONResponse(message_resource(form, message_sid=sid()), status_code=201)

        app = Starlette(routes=[Route(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", create, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeTwilio:
        self.thread.start()
        eventually(lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


def stopped(proc: subprocess.Popen[bytes]) -> int | None:
    """Stop `proc` without raising (cleanup must not hide the test's own failure): its exit code on
    SIGTERM, or None if it did not stop in time and had to be killed."""
    try:
        return procs.stop(proc)
    except AssertionError:
        return None


def test_sms_round_trip_through_real_processes(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with FakeTwilio() as twilio:
        environ = procs.env(
            REDIS_URL=redis_url,
            PORT=str(port),
            PUBLIC_BASE_URL=public,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_API_BASE_URL=f"http://127.0.0.1:{twilio.port}",
        )
        cmds = procs.procfile()
        web = procs.start(cmds["web"], environ, tmp_path)
        worker = procs.start(cmds["worker"], environ, tmp_path)
        try:
            procs.wait_http(public + "/healthz", proc=web)
            token = (
                procs.chatgw("tokens", "create", "--name", "ops", "--role", "admin", environ=environ, cwd=tmp_path)
                .strip()
                .splitlines()[-1]
            )
            h = {"API-Token": token}
            agent = httpx.post(
                public + "/v1/agents",
                headers=h,
                json={"name": "SMS", "channels": {"numbers": ["+15550001111"]}, "debounce_ms": 0},
            ).json()
            assert agent["success"], agent
            form = sms_form(Body="Hello over SMS")
            r = httpx.post(
                public + "/twilio/messages",
                data=form,
                headers={"X-Twilio-Signature": sign(public + "/twilio/messages", form)},
            )
            assert r.status_code == 200 and r.text.endswith("<Response/>")
            eventually(lambda: twilio.created, timeout=20)
            sent = twilio.created[0]
            assert (sent["To"], sent["From"]) == ("+15557654321", "+15550001111")
            assert "Hello over SMS" in sent["Body"]
            assert sent["StatusCallback"] == public + "/twilio/messages/status"
            session = httpx.get(public + "/v1/chat/sessions", headers=h).json()["data"]["items"][0]
            msgs: list[dict[str, Any]] = httpx.get(
                public + f"/v1/chat/session/{session['id']}/messages", headers=h
            ).json()["data"]["items"]
            msid = msgs[-1]["channel_message_id"]
            callback = status_form(
                message_sid=msid, account_sid=ACCOUNT_SID, status="delivered", from_=sent["From"], to=sent["To"]
            )
            cb = httpx.post(
                sent["StatusCallback"],
                data=callback,
                headers={"X-Twilio-Signature": sign(sent["StatusCallback"], callback)},
            )
            assert cb.status_code == 200
            msgs = httpx.get(public + f"/v1/chat/session/{session['id']}/messages", headers=h).json()["data"]["items"]
            assert msgs[-1]["delivery"]["status"] == "delivered"
        finally:
            exit_codes = {"worker": stopped(worker), "web": stopped(web)}
    # Asserted after the cleanup, not inside it, so a failure above is reported as itself.
    assert exit_codes["worker"] == 0, exit_codes
    assert exit_codes["web"] in (0, -signal.SIGTERM), exit_codes
