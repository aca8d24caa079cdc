"""`chatgw chat`: play a customer texting an agent through the real, signed Twilio webhook.

Each line typed is POSTed to /twilio/messages as Twilio would send it (form-encoded,
X-Twilio-Signature computed with the SDK's RequestValidator). What the customer receives
is printed as it arrives: the dev outbox when Twilio is not configured (labelled as not
sent), otherwise the agent's and operators' messages in the thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import httpx
import redis
from twilio.request_validator import RequestValidator

from agent_core.models import E164, Role
from agent_core.settings import Settings
from agent_core.store import Store, agents, health, messages, notices, outbound, sessions
from channels.twilio import SIGNATURE_HEADER, webhook_url
from channels.twilio.forms import inbound_form, new_sid

DEV_ACCOUNT_SID = "AC" + "0" * 32
QUIET_AFTER_EOF_S = 15.0


def _agent_number(agent: Any, whatsapp: bool) -> str | None:
    for number in agent.channels.numbers:
        if number.startswith("whatsapp:") == whatsapp:
            return str(number)
    return None


class Listener(threading.Thread):
    """Prints what reaches the customer; tracks when the agent has finished answering."""

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

    def session_id(self) -> str | None:
        return self.store.run(sessions.open_session_id(self.agent_id, self.customer_id))

    def run(self) -> None:
        while not self.stop.is_set():
            item = self.pubsub.get_message(timeout=0.5)
            if not item:
                continue
            notice = json.loads(item["data"])
            kind = notice.get("type")
            if self.dev and kind == "dev_outbox" and notice.get("to") == self.address:
                self._print_outbox()
            elif not self.dev and kind == "message" and notice.get("session_id") == self.session_id():
                if notice.get("role") in ("agent", "operator") and not notice.get("private"):
                    self._print_message(notice["session_id"], int(notice["seq"]))
            elif kind == "turn" and notice.get("final") and notice.get("session_id") == self.session_id():
                self.settled = max(self.settled, int(notice.get("settled_upto") or 0))
            elif (
                kind == "session" and notice.get("mode") == "support" and notice.get("session_id") == self.session_id()
            ):
                print("  (a human operator has taken over this conversation)", flush=True)

    def _print_outbox(self) -> None:
        for entry in self.store.run(outbound.dev_outbox(20)):
            if entry["to"] == self.address and entry["sids"][0] not in getattr(self, "_shown", set()):
                self.__dict__.setdefault("_shown", set()).add(entry["sids"][0])
                for part in entry["parts"]:
                    print(f"agent> {part}", flush=True)
                if entry.get("content_sid"):
                    print(
                        f"agent> [template {entry['content_sid']} {entry.get('content_variables') or {}}]", flush=True
                    )
                print("       (dev outbox: Twilio is not configured, nothing was sent)", flush=True)
                self.last_seen = time.monotonic()

    def _print_message(self, sid: str, seq: int) -> None:
        msg = self.store.run(messages.get(sid, seq))
        if msg is not None:
            who = "agent" if msg.role is Role.agent else f"operator {msg.author or ''}".strip()
            print(f"{who}> {msg.text}", flush=True)
            self.last_seen = time.monotonic()


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
    signed_url = webhook_url(settings.app.public_base_url, "/twilio/messages")
    post_url = (args.url.rstrip("/") + "/twilio/messages") if args.url else signed_url
    validator = RequestValidator(token)
    dev = not twilio.configured
    listener = Listener(client, store, agent.id, args.from_, address, dev)
    listener.start()
    print(f"Texting {agent.name} ({to}) from {address}. Type a message; Ctrl-D to end.", flush=True)
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
            response = http.post(post_url, data=params, headers={SIGNATURE_HEADER: signature})
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
                and time.monotonic() - listener.last_seen > 0.5
            ):
                break
            time.sleep(0.1)
    listener.stop.set()
    return 0
