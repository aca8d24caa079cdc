"""`chatgw call CALL_ID`: play the callee of an escalation call in the terminal (SPEC §8).

It drives the call the way Twilio does, through the gateway's real, signed voice webhooks
(or, for an agent on ConversationRelay, the real socket with a signed handshake): ringing
and answered status callbacks, the call's TwiML played step by step — what prints is what
the voice agent says, what you type is what the callee says (an empty line is silence,
`/press 1` a key press) — and, when either side hangs up (or input ends), the signed
`completed` status callback, after which the call's summary flows back into the chat.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import redis
from twilio.request_validator import RequestValidator

from agent_core.calls import get_call
from agent_core.settings import Settings
from agent_core.store import Store, health
from channels.twilio import SIGNATURE_HEADER, webhook_url
from channels.twilio import relay as frames
from channels.twilio.forms import new_sid
from channels.twilio.voice import call_status_form, read_twiml, voice_form
from gateway.cli.chat import DEV_ACCOUNT_SID, NOT_FOUND_HINT, Target, find_gateway

PRESS = "/press "
HANG_UP = "/hangup"
# The relay sends `end` right after the goodbye's last text frame.
END_WAIT_S = 0.5


class Callee:
    """One call played against the gateway at `target`, signing with `token`."""

    def __init__(self, target: Target, token: str, account_sid: str, call_sid: str, agent_number: str, to: str):
        self.target = target
        self.validator = RequestValidator(token)
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.agent_number = agent_number
        self.to = to
        self.http = httpx.Client(timeout=20)
        self.sequence = 0
        self.started = time.monotonic()

    def _post(self, public_url: str, form: dict[str, str]) -> httpx.Response:
        """POST to the gateway the form Twilio would send to `public_url` (signed for it)."""
        parts = urlsplit(public_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        signature = self.validator.compute_signature(public_url, form)
        try:
            response = self.http.post(self.target.post_base + path, data=form, headers={SIGNATURE_HEADER: signature})
        except httpx.TransportError as exc:
            raise SystemExit(
                f"chatgw: no gateway answered at {self.target.post_base} ({exc}); {NOT_FOUND_HINT}"
            ) from exc
        if response.status_code == 403:
            raise SystemExit(
                "chatgw: the gateway refused the signature (it checks against its own PUBLIC_BASE_URL; this call "
                f"signed for {self.target.signed_base})"
            )
        if response.status_code != 200:
            raise SystemExit(f"chatgw: the voice webhook answered {response.status_code}: {response.text}")
        return response

    def url(self, path: str) -> str:
        return webhook_url(self.target.signed_base, path)

    def form(self, speech: str | None = None, digits: str | None = None) -> dict[str, str]:
        form = voice_form(
            call_sid=self.call_sid, account_sid=self.account_sid, from_=self.agent_number, to=self.to, speech=speech
        )
        if digits:
            form["Digits"] = digits
        return form

    def status(self, value: str, duration_s: int | None = None) -> None:
        self.sequence += 1
        form = call_status_form(
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            from_=self.agent_number,
            to=self.to,
            status=value,
            duration_s=duration_s,
            sequence=self.sequence,
        )
        self._post(self.url("/twilio/voice/status"), form)

    def hang_up(self) -> None:
        self.status("completed", max(1, int(time.monotonic() - self.started)))
        print("(call ended; its summary will appear in the chat)", flush=True)

    def play(self, call_id: str, lines: Iterator[str]) -> None:
        self.status("ringing")
        self.started = time.monotonic()
        self.status("in-progress")
        xml = self._post(self.url(f"/twilio/voice/{call_id}"), self.form()).text
        while True:
            next_url, form = "", self.form()
            for step in read_twiml(xml):
                if step.kind == "say" and step.text:
                    print(f"agent> {step.text}", flush=True)
                elif step.kind == "hangup":
                    print("(the agent hung up)", flush=True)
                    self.hang_up()
                    return
                elif step.kind == "relay":
                    self.relay(step.url, step.text, lines)
                    return
                elif step.kind == "listen":
                    line = _read(lines)
                    if line is None or line.strip() == HANG_UP:
                        self.hang_up()
                        return
                    if line.startswith(PRESS):
                        form = self.form(digits=line[len(PRESS) :].strip())
                    else:
                        form = self.form(speech=line) if line.strip() else self.form()
                    next_url = step.url
                    break
                elif step.kind == "redirect":
                    next_url = step.url
                    break
            if not next_url:
                self.hang_up()
                return
            xml = self._post(next_url, form).text

    def relay(self, advertised: str, greeting: str, lines: Iterator[str]) -> None:
        from websockets.sync.client import connect

        parts = urlsplit(advertised)
        base = urlsplit(self.target.post_base)
        scheme = "wss" if base.scheme == "https" else "ws"
        socket_url = f"{scheme}://{base.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        signature = self.validator.compute_signature(advertised, {})
        if greeting:
            print(f"agent> {greeting}", flush=True)
        with connect(socket_url, additional_headers={SIGNATURE_HEADER: signature}) as ws:
            ws.send(
                frames.setup_message(
                    call_sid=self.call_sid, account_sid=self.account_sid, from_=self.agent_number, to=self.to
                )
            )
            while True:
                line = _read(lines)
                if line is None or line.strip() == HANG_UP:
                    break
                if not line.strip():
                    continue
                if line.startswith(PRESS):
                    ws.send(frames.dtmf_message(line[len(PRESS) :].strip()[:1]))
                else:
                    ws.send(frames.prompt_message(line))
                if self._listen(ws):
                    print("(the agent hung up)", flush=True)
                    break
        self.hang_up()

    @staticmethod
    def _listen(ws: object) -> bool:
        """Print the streamed reply as it arrives; True when the agent ended the call."""
        print("agent> ", end="", flush=True)
        while True:
            sent = frames.read_sent(ws.recv(timeout=30))  # type: ignore[attr-defined]
            if sent.kind == "end":
                print(flush=True)
                return True
            if sent.kind == "text":
                print(sent.token, end="", flush=True)
                if sent.last:
                    print(flush=True)
                    return _ends_now(ws)


def _ends_now(ws: object) -> bool:
    """Whether an `end` frame follows the reply at once (the agent said goodbye and hangs up)."""
    from websockets.exceptions import ConnectionClosed

    try:
        following = ws.recv(timeout=END_WAIT_S)  # type: ignore[attr-defined]
    except TimeoutError:
        return False
    except ConnectionClosed:
        return True
    return frames.read_sent(following).kind == "end"


def _read(lines: Iterator[str]) -> str | None:
    print("you> ", end="", flush=True)
    try:
        line = next(lines)
    except StopIteration:
        print(flush=True)
        return None
    if not sys.stdin.isatty():
        print(line.rstrip("\n"), flush=True)
    return line.rstrip("\n")


def run_call(settings: Settings, redis_url: str, args: argparse.Namespace) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    call = store.run(get_call(args.call_id))
    if call is None:
        print(f"chatgw: no call with id '{args.call_id}'", file=sys.stderr)
        return 2
    if call.status.terminal:
        print(f"chatgw: call '{call.id}' has already ended ({call.status.value})", file=sys.stderr)
        return 2
    if call.transport == "external":
        print(f"chatgw: call '{call.id}' is handled by the agent's external voice agent", file=sys.stderr)
        return 2
    twilio = settings.twilio
    configured = twilio.configured and twilio.auth_token is not None
    token = twilio.auth_token.get_secret_value() if configured and twilio.auth_token else ""
    token = token or store.run(health.dev_twilio_token())
    target = find_gateway(settings, args.url)
    callee = Callee(
        target,
        token,
        twilio.account_sid or DEV_ACCOUNT_SID,
        call.twilio_call_sid or new_sid("CA"),
        call.from_number or "",
        call.to,
    )
    print(
        f"Answering call {call.id} to {call.to} at {target.post_base}. Type what you say "
        f"(empty line: silence, '{PRESS}1': a key, {HANG_UP} or Ctrl-D: hang up).",
        flush=True,
    )
    try:
        callee.play(call.id, iter(sys.stdin))
    except SystemExit as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
