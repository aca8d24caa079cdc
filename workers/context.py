"""What jobs need (Redis, store, HTTP clients, LLM providers, the channel registry), built
once per worker process.

The process that runs jobs installs one with `use()` (`chatgw worker`, `chatgw cron`, the
tests); nothing connects at import time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from agent_core import calls, knowledge, lifecycle
from agent_core.delivery import Deliverer, DeliveryConfig, DeliveryOutcome
from agent_core.llm import LLMProvider, OfflineProvider
from agent_core.metrics import DELIVERY_SECONDS, LLM_RETRIES, ObservedProvider, ObservedSender, Tally
from agent_core.models import Agent, Channel, Message, Session, now_iso
from agent_core.settings import Settings
from agent_core.store import Store, outbound
from agent_core.store.connection import sync_client
from agent_core.tools import BUILTINS
from agent_core.turns import LeaseKeeper, TurnDeps
from channels.models import CallPlacer, Sender, Senders
from channels.twilio import webhook_url
from channels.twilio.dev import DevCallPlacer, DevOutboxSender
from workers import queues
from workers.rqwire import RQJobFormat
from workers.turnpool import CpuGate, GatedProvider

log = logging.getLogger("workers.context")


@dataclass
class WorkerContext:
    settings: Settings
    redis_url: str
    redis: redis.Redis = field(init=False)
    rq_redis: redis.Redis = field(init=False)
    store: Store = field(init=False)
    metrics: Tally = field(init=False)
    http: httpx.Client = field(init=False)
    offline: LLMProvider = field(init=False)
    openai: LLMProvider | None = field(init=False, default=None)
    leases: LeaseKeeper = field(init=False)
    turn_deps: TurnDeps = field(init=False)
    twilio_http: httpx.Client = field(init=False)
    senders: Senders = field(init=False)
    deliverer: Deliverer = field(init=False)
    placement: calls.Placement = field(init=False)
    # Turns hold it while they run Python, not while the LLM answers (workers/turnpool.py).
    gate: CpuGate = field(init=False, default_factory=CpuGate)

    def __post_init__(self) -> None:
        self.redis = sync_client(self.redis_url)
        # RQ stores pickled payloads, so it gets a connection that does not decode replies.
        self.rq_redis = sync_client(self.redis_url, decode=False)
        self.store = Store(self.redis, RQJobFormat())
        # What this process measures, written to Redis after each job (flush_metrics).
        self.metrics = Tally()
        llm = self.settings.llm
        # One client for the LLM, custom tools and webhooks; enough connections for every
        # worker thread of this process to have a request in flight.
        self.http = httpx.Client(
            timeout=httpx.Timeout(llm.llm_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )
        self.offline = GatedProvider(ObservedProvider(OfflineProvider(), self.metrics), self.gate)
        if llm.provider == "openai" and llm.openai_api_key is not None:
            from agent_core.llm.openai import OpenAIProvider

            self.openai = GatedProvider(
                ObservedProvider(
                    OpenAIProvider(
                        api_key=llm.openai_api_key.get_secret_value(),
                        base_url=llm.openai_base_url,
                        http_client=self.http,
                        timeout_s=llm.llm_timeout_s,
                        max_retries=llm.llm_max_retries,
                        on_retry=lambda: self.metrics.count(LLM_RETRIES, "openai"),
                    ),
                    self.metrics,
                ),
                self.gate,
            )
        lease_ms = int(self.settings.app.turn_lease_s * 1000)
        self.leases = LeaseKeeper(self.store, ttl_ms=lease_ms)
        self.twilio_http = httpx.Client(timeout=httpx.Timeout(15.0, connect=5.0))
        messaging = ObservedSender(self._messaging_sender(), self.metrics)
        # The channel registry: a new channel's sender plugs in here.
        self.senders = {Channel.sms: messaging, Channel.whatsapp: messaging}
        twilio = self.settings.twilio
        self.deliverer = Deliverer(
            store=self.store,
            senders=self.senders,
            config=DeliveryConfig(
                status_callback_url=webhook_url(self.settings.app.public_base_url, "/twilio/messages/status"),
                messages_per_second=twilio.messages_per_second,
            ),
            retry_later=lambda sid, mid, attempt, delay, held: queues.deliver_later(
                self.rq_redis, sid, mid, attempt, delay, held
            ),
            backoff_s=queues.BACKOFF_S[: queues.DELIVERY_ATTEMPTS],
        )
        self.turn_deps = TurnDeps(
            store=self.store,
            provider_for=self.provider_for,
            leases=self.leases,
            lock_ttl_ms=lease_ms,
            memory_for=lifecycle.memory_for(self.store),
            deliver=self.deliver_reply,
            http=self.http,
            retrieve=lambda agent, query: knowledge.retrieve(self.store, agent.knowledge, query),
            tools={
                **BUILTINS,
                "search_knowledge": knowledge.search_tool(self.store),
                "request_call": calls.request_call_tool(self.store),
            },
            sleep=self.gate.sleep,
        )
        base = self.settings.app.public_base_url
        self.placement = calls.Placement(
            provider_for=self.provider_for,
            placer=self._call_placer(),
            public_url=lambda path: webhook_url(base, path),
            http=self.http,
            retry_later=lambda call_id, attempt, delay: queues.place_call_later(self.rq_redis, call_id, attempt, delay),
        )

    def _call_placer(self) -> CallPlacer:
        from channels.twilio.calls import TwilioCallPlacer

        placer: CallPlacer = self._twilio(DevCallPlacer, TwilioCallPlacer)
        return placer

    def _messaging_sender(self) -> Sender:
        from channels.twilio.sender import TwilioSender

        sender: Sender = self._twilio(DevOutboxSender, TwilioSender)
        return sender

    def _twilio(self, dev: Callable[..., Any], live: Callable[..., Any]) -> Any:
        """Twilio's REST client `live` with the account's credentials, or without them its dev
        outbox stand-in `dev`, recording what would have been sent (SPEC §12.1)."""
        twilio = self.settings.twilio
        if not twilio.configured:
            return dev(lambda entry: self.store.run(outbound.dev_push(entry)), now_iso)
        assert twilio.account_sid is not None and twilio.auth_token is not None
        return live(
            twilio.account_sid,
            twilio.auth_token.get_secret_value(),
            http_client=self.twilio_http,
            api_base_url=twilio.api_base_url,
        )

    def provider_for(self, agent: Agent) -> tuple[LLMProvider, str]:
        if agent.llm.provider == "offline" or self.openai is None:
            return self.offline, "offline"
        return self.openai, agent.llm.model or self.settings.llm.llm_model

    def deliver(
        self, session_id: str, message_id: str, attempt: int = 0, *, slot_held: bool = False
    ) -> DeliveryOutcome:
        """One delivery attempt, timed (`chatgw_delivery_duration_seconds`)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = self.deliverer.deliver(session_id, message_id, attempt, slot_held=slot_held)
            outcome = result.value.replace(" ", "_")
            return result
        finally:
            self.metrics.observe(DELIVERY_SECONDS, time.perf_counter() - started, outcome)

    def deliver_reply(self, session: Session, message: Message) -> None:
        """Deliver a fresh reply from the turn that wrote it (a failure is retried later)."""
        self.deliver(session.id, message.id)

    def flush_metrics(self) -> None:
        """Write what this process measured to Redis (jobs call it when they end). Metrics
        must not fail a job: while Redis is unreachable they are kept for the next flush."""
        try:
            self.metrics.flush(self.store)
        except redis.RedisError as exc:
            log.warning("metrics kept for the next flush, Redis refused them: %s", exc)

    def close(self) -> None:
        self.leases.stop()
        self.http.close()
        self.twilio_http.close()
        self.redis.close()
        self.rq_redis.close()


_context: WorkerContext | None = None
_lock = threading.Lock()


def use(ctx: WorkerContext | None) -> None:
    """Install the context jobs in this process use (None to reset)."""
    global _context
    with _lock:
        _context = ctx


def get() -> WorkerContext:
    with _lock:
        if _context is None:
            raise RuntimeError("no worker context in this process: start jobs with `chatgw worker`")
        return _context
