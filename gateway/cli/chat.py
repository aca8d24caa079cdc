"""`chatgw chat`: play a customer texting an agent through the real, signed Twilio webhook.

Each line typed is POSTed to /twilio/messages as Twilio would send it (form-encoded,
X-Twilio-Signature computed with the SDK's RequestValidator, for the URL the gateway checks:
its PUBLIC_BASE_URL + path). The gateway is the one `chatgw up`/`chatgw web` recorded in the
data dir, else `--url`, else PUBLIC_BASE_URL. What the customer receives is printed as it
arrives with who sent it (the agent, or the operator by name): the dev outbox when Twilio is
not configured (labelled as not sent), otherwise the agent's and operators' messages in the
thread. Takeovers, hand-backs and closes are printed with the operator who made them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from twilio.request_validator import RequestValidator

from agent_core.models import E164, Message, MessageKind, Role
from agent_core.settings import Settings
from agent_core.store import Store, agents, health, messages, notices, outbound, sessions
from channels.twilio import SIGNATURE_HEADER, webhook_url
from channels.twilio.forms import inbound_form, new_sid
from gateway.cli.main import running_web

DEV_ACCOUNT_SID = "AC" + "0" * 32
QUIET_AFTER_EOF_S = 15.0
NOT_FOUND_HINT = "start it with `chatgw up` (run chatgw chat from the same directory to find it), or pass --url"
# A dev outbox entry is written just before the delivery records which message it was; an
# entry still unmatched after this long is printed without a sender.
ATTRIBUTE_WITHIN_S = 5.0
MODE_CHANGES = {
    "takeover": "takeover by {who}: a person is answering now",
    "end": "handed back to the AI by {who}",
    "close": "conversation closed by {who}",
}


@dataclass(frozen=True)
class Target:
    """Where to POST webhooks (`post_base`) and the base URL to sign them for (`signed_base`)."""

    post_base: str
    signed_base: str


def find_gateway(settings: Settings, url: str | None) -> Target:
    """The gateway to text: the web process recorded under the data dir (signing for its
    PUBLIC_BASE_URL), else `url` (signed for PUBLIC_BASE_URL when that is set, else for
    `url` itself: a gateway is normally reached by its public URL), else PUBLIC_BASE_URL."""
    web = running_web(Path(settings.app.data_dir))
    if url is not None:
        base = url.rstrip("/")
        if web is not None and web.url == base:
            return Target(base, web.public_base_url)
        explicit = "public_base_url" in settings.app.model_fields_set
        return Target(base, settings.app.public_base_url if explicit else base)
    if web is not None:
        return Target(web.url, web.public_base_url)
    return Target(settings.app.public_base_url, settings.app.public_base_url)


def _agent_number(agent: Any, whatsapp: bool) -> str | None:
    for number in agent.channels.numbers:
        if number.startswith("whatsapp:") == whatsapp:
            return str(number)
    return None


def speaker(msg: Message | None) -> str:
    """Who a customer-facing message is from, as the chat prints it."""
    if msg is None:
        return "(sender not recorded)"
    if msg.role is Role.operator:
        return f"operator {msg.author}" if msg.author else "operator"
    return "agent"


@dataclass
class Line:
    """Something to print in order: a ready note, or a dev outbox entry waiting to learn
    which stored message (and so which sender) it was."""

    text: str = ""
    entry: dict[str, Any] | None = None
    deadline: float = 0.0


def _entry_key(entry: dict[str, Any]) -> str:
    return str((entry.get("sids") or [entry.get("created_at")])[0])


def _call_id_of(entry: dict[str, Any]) -> str:
    """The call id in a dev outbox call entry's voice URL (…/twilio/voice/CALL_ID)."""
    return str(entry.get("url", "")).rstrip("/").rsplit("/", 1)[-1]


def call_hint(call_id: str, *, placed: bool) -> str:
    """What the chat prints when the agent places a call, and how to answer it."""
    if placed:
        return f"  (the agent is calling you: call {call_id}; answer your phone)"
    return (
        f"  (the agent placed call {call_id} — dev outbox: Twilio is not configured, the call was not placed. "
        f"Answer it in another terminal: chatgw call {call_id})"
    )


class Listener(threading.Thread):
    """Prints what reaches the customer, who sent it, and each change of who answers; tracks
    when the agent has finished answering."""

    def __init__(self, client: redis.Redis, store: Store, agent_id: str, customer_id: str, address: str, dev: bool):
        super().__init__(daemon=True)
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(notices.TURNS, notices.LIVE)
        self.store = store
        self.agent_id = agent_id
        self.customer_id = customer_id
        self.address = address
        self.dev = dev
        self.settled = 0
        self.last_seen = time.monotonic()
        self.stop = threading.Event()
        self.pending: deque[Line] = deque()
        # What earlier chats already showed stays in the outbox; only new entries are printed.
        self.shown = {
            _entry_key(e) for e in self.store.run(outbound.dev_outbox(50)) if e.get("to") in (address, customer_id)
        }
        self.ours: dict[str, bool] = {}

    def session_id(self) -> str | None:
        return self.store.run(sessions.open_session_id(self.agent_id, self.customer_id))

    def _is_ours(self, session_id: str | None) -> bool:
        # Remembered, so a session's last notices (its close) still count once it is closed.
        if not session_id:
            return False
        if session_id not in self.ours:
            session = self.store.run(sessions.get(session_id))
            self.ours[session_id] = (
                session is not None and session.agent_id == self.agent_id and session.customer_id == self.customer_id
            )
        return self.ours[session_id]

    def run(self) -> None:
        while not self.stop.is_set():
            item = self.pubsub.get_message(timeout=0.05 if self.pending else 0.5)
            if item:
                self._handle(json.loads(item["data"]))
            self._flush()

    def _handle(self, notice: dict[str, Any]) -> None:
        kind = notice.get("type")
        if kind == "dev_outbox":
            # A call goes to the number itself, a WhatsApp message to the prefixed address.
            if self.dev and notice.get("to") in (self.address, self.customer_id):
                self._queue_outbox()
        elif kind == "message" and self._is_ours(notice.get("session_id")):
            role = notice.get("role")
            if role == Role.system.value:
                self._mode_change(notice["session_id"], int(notice["seq"]))
            elif not self.dev and role in (Role.agent.value, Role.operator.value) and not notice.get("private"):
                msg = self.store.run(messages.get(notice["session_id"], int(notice["seq"])))
                if msg is not None:
                    self.pending.append(Line(text=f"{speaker(msg)}> {msg.text}"))
        elif kind == "call" and self._is_ours(notice.get("session_id")) and not self.dev:
            if notice.get("status") == "queued":
                self.pending.append(Line(text=call_hint(str(notice.get("call_id")), placed=True)))
        elif kind == "turn" and notice.get("final") and self._is_ours(notice.get("session_id")):
            self.settled = max(self.settled, int(notice.get("settled_upto") or 0))

    def _mode_change(self, session_id: str, seq: int) -> None:
        msg = self.store.run(messages.get(session_id, seq))
        if msg is None:
            return
        # Every operator command is recorded with its operator; takeover, end and close are
        # the ones that change who answers.
        command = msg.meta.get("command") if msg.kind is MessageKind.command else None
        if command in MODE_CHANGES:
            self.pending.append(Line(text=f"  ({MODE_CHANGES[command].format(who=msg.author or 'an operator')})"))

    def _queue_outbox(self) -> None:
        # The outbox is newest first; print oldest first.
        for entry in reversed(self.store.run(outbound.dev_outbox(20))):
            key = _entry_key(entry)
            to = (self.address, self.customer_id) if entry.get("kind") == "call" else (self.address,)
            if entry.get("to") in to and key not in self.shown:
                self.shown.add(key)
                self.pending.append(Line(entry=entry, deadline=time.monotonic() + ATTRIBUTE_WITHIN_S))

    def _sent_message(self, entry: dict[str, Any]) -> Message | None:
        """The stored message a dev outbox entry delivered, once the delivery recorded its SM… id."""
        sids = entry.get("sids") or []
        ref = self.store.run(outbound.part_of(sids[0])) if sids else None
        return self.store.run(messages.get(ref[0], ref[1])) if ref else None

    def _flush(self) -> None:
        while self.pending:
            line = self.pending[0]
            if line.entry is None:
                print(line.text, flush=True)
            elif line.entry.get("kind") == "call":
                print(call_hint(_call_id_of(line.entry), placed=False), flush=True)
            else:
                msg = self._sent_message(line.entry)
                if msg is None and time.monotonic() < line.deadline:
                    return
                # The same number may be texting another agent; the outbox does not say which.
                if msg is None or self._is_ours(msg.session_id):
                    self._print_entry(line.entry, speaker(msg))
            self.pending.popleft()
            self.last_seen = time.monotonic()

    @staticmethod
    def _print_entry(entry: dict[str, Any], who: str) -> None:
        for part in entry["parts"]:
            if part:
                print(f"{who}> {part}", flush=True)
        if entry.get("content_sid"):
            print(f"{who}> [template {entry['content_sid']} {entry.get('content_variables') or {}}]", flush=True)
        print("       (dev outbox: Twilio is not configured, nothing was sent)", flush=True)


def run_chat(settings: Settings, redis_url: str, args: argparse.Namespace) -> int:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    agent = store.run(agents.get(args.agent))
    if agent is None:
        print(f"chatgw: no agent with id '{args.agent}'", file=sys.stderr)
        return 2
    if not E164.match(args.from_):
        print(f"chatgw: --from must be an E.164 number like +15550001234, got '{args.from_}'", file=sys.stderr)
        return 2
    to = _agent_number(agent, args.whatsapp)
    if to is None:
        kind = "WhatsApp (whatsapp:+…)" if args.whatsapp else "SMS"
        print(f"chatgw: agent '{agent.id}' has no {kind} number in channels.numbers", file=sys.stderr)
        return 2
    address = f"whatsapp:{args.from_}" if args.whatsapp else args.from_
    twilio = settings.twilio
    # Without Twilio credentials the gateway signs with a token kept in Redis (made by
    # whichever of the two asks first).
    configured = twilio.configured and twilio.auth_token is not None
    token = twilio.auth_token.get_secret_value() if configured else store.run(health.dev_twilio_token())
    target = find_gateway(settings, args.url)
    signed_url = webhook_url(target.signed_base, "/twilio/messages")
    post_url = target.post_base + "/twilio/messages"
    validator = RequestValidator(token)
    dev = not twilio.configured
    listener = Listener(client, store, agent.id, args.from_, address, dev)
    listener.start()
    print(
        f"Texting {agent.name} ({to}) from {address} at {target.post_base}. Type a message; Ctrl-D to end.", flush=True
    )
    sent_any = False
    with httpx.Client(timeout=15) as http:
        for line in sys.stdin:
            text = line.rstrip("\n")
            if not text.strip():
                continue
            params = inbound_form(
                message_sid=new_sid("SM"),
                account_sid=twilio.account_sid or DEV_ACCOUNT_SID,
                from_=address,
                to=to,
                body=text,
                profile_name="Dev Customer" if args.whatsapp else None,
                whatsapp=args.whatsapp,
            )
            signature = validator.compute_signature(signed_url, params)
            try:
                response = http.post(post_url, data=params, headers={SIGNATURE_HEADER: signature})
            except httpx.TransportError as exc:
                print(f"chatgw: no gateway answered at {target.post_base} ({exc}); {NOT_FOUND_HINT}", file=sys.stderr)
                return 1
            if response.status_code == 403:
                print(
                    "chatgw: the gateway refused the signature: it checks it against its own PUBLIC_BASE_URL and "
                    f"this chat signed for {target.signed_base}; give chatgw chat the gateway's PUBLIC_BASE_URL",
                    file=sys.stderr,
                )
                return 1
            if response.status_code != 200:
                print(f"chatgw: the webhook answered {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            sent_any = True
    if sent_any:
        # Input ended (piped): wait for the agent to finish answering, then exit.
        deadline = time.monotonic() + QUIET_AFTER_EOF_S
        while time.monotonic() < deadline:
            sid = listener.session_id()
            session = store.run(sessions.get(sid)) if sid else None
            if (
                session is not None
                and listener.settled >= session.last_cust_seq
                and not listener.pending
                and time.monotonic() - listener.last_seen > 0.5
            ):
                break
            time.sleep(0.1)
    listener.stop.set()
    return 0
