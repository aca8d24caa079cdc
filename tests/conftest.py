"""Shared fixtures: a real Redis (embedded by default, REDIS_URL to point elsewhere — the
suite flushes that database), the real app through TestClient, real RQ workers, and
OpenAI mocked at the HTTP seam with respx."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import respx
from starlette.testclient import TestClient

from agent_core.settings import AppSettings, LLMSettings, RedisSettings, Settings, TwilioSettings
from agent_core.store import Store, tokens
from agent_core.store.tokens import TokenRole
from gateway.app import create_app
from gateway.cli.redis_server import EmbeddedRedis
from tests.fakes import FakeLLM
from workers import context, jobs
from workers.queues import ALL_QUEUES
from workers.turnpool import OutboundPool, TurnPool
from workers.worker import BACKGROUND_QUEUES, ThreadWorker

PUBLIC_URL = "https://gw.example.com"
LLM_BASE = "https://llm.test/v1"


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_base_url: str) -> str:
    client = redis.Redis.from_url(redis_base_url)
    client.flushdb()
    client.close()
    return redis_base_url


@pytest.fixture
def llm_key() -> str | None:
    """Override in a test module (return "sk-test") to use the OpenAI provider via respx."""
    return None


@pytest.fixture
def twilio_settings() -> TwilioSettings:
    return TwilioSettings(_env_file=None, account_sid=None, auth_token=None)  # type: ignore[call-arg]


@pytest.fixture
def settings(redis_url: str, llm_key: str | None, twilio_settings: TwilioSettings) -> Settings:
    return Settings(
        app=AppSettings(
            _env_file=None,  # type: ignore[call-arg]
            public_base_url=PUBLIC_URL,
            secret_key="test-secret-key-0123456789",
            inbound_wait_s=10,
            token_cache_s=0,
            log_format="console",
        ),
        redis=RedisSettings(_env_file=None, url=redis_url),  # type: ignore[call-arg]
        twilio=twilio_settings,
        llm=LLMSettings(
            _env_file=None,  # type: ignore[call-arg]
            openai_api_key=llm_key,
            openai_base_url=LLM_BASE if llm_key else None,
            llm_model="gpt-test",
            llm_timeout_s=5,
            llm_max_retries=0,
        ),
    )


@pytest.fixture
def ctx(settings: Settings, redis_url: str) -> Iterator[context.WorkerContext]:
    wctx = context.WorkerContext(settings=settings, redis_url=redis_url)
    context.use(wctx)
    yield wctx
    context.use(None)
    wctx.close()


@pytest.fixture
def store(ctx: context.WorkerContext) -> Store:
    return ctx.store


@pytest.fixture
def client(settings: Settings, redis_url: str, ctx: context.WorkerContext) -> Iterator[TestClient]:
    with TestClient(create_app(settings, redis_url)) as test_client:
        yield test_client


@pytest.fixture
def tokens_by_role(store: Store) -> dict[str, str]:
    out = {}
    for role, name in (("admin", "admin@example.com"), ("operator", "alice@example.com"), ("api", "backend")):
        out[role], _ = store.run(tokens.create(name, TokenRole(role)))
    return out


@pytest.fixture
def admin(tokens_by_role: dict[str, str]) -> dict[str, str]:
    return {"API-Token": tokens_by_role["admin"]}


@pytest.fixture
def operator(tokens_by_role: dict[str, str]) -> dict[str, str]:
    return {"API-Token": tokens_by_role["operator"]}


@pytest.fixture
def api(tokens_by_role: dict[str, str]) -> dict[str, str]:
    return {"API-Token": tokens_by_role["api"]}


class Workers:
    """Turns on a TurnPool and RQ workers for the other queues, on threads of this process
    (as `chatgw worker` runs them)."""

    def __init__(self, ctx: context.WorkerContext, count: int) -> None:
        self.pools = [
            TurnPool(ctx.rq_redis, jobs.turn, slots=8),
            OutboundPool(ctx.rq_redis, slots=4),
        ]
        self.workers = [
            ThreadWorker(list(BACKGROUND_QUEUES[0]), connection=ctx.rq_redis, worker_ttl=16) for _ in range(count)
        ]
        self.threads = [threading.Thread(target=p.work, daemon=True) for p in self.pools] + [
            threading.Thread(target=w.work, kwargs={"logging_level": "WARNING"}, daemon=True) for w in self.workers
        ]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for p in self.pools:
            p.stop()
        for w in self.workers:
            w.stop()
        for t in self.threads:
            t.join(timeout=10)


@pytest.fixture
def workers(ctx: context.WorkerContext) -> Iterator[Workers]:
    running = Workers(ctx, 2)
    yield running
    running.stop()


def drain(ctx: context.WorkerContext) -> None:
    """Run every queued job to completion in this thread: the turns on a TurnPool, the
    deliveries they queued on an OutboundPool, then the rest (and anything left) on an RQ
    SimpleWorker, burst mode."""
    TurnPool(ctx.rq_redis, jobs.turn, slots=4).work(burst=True)
    OutboundPool(ctx.rq_redis, slots=4).work(burst=True)
    ThreadWorker(list(ALL_QUEUES), connection=ctx.rq_redis).work(burst=True, logging_level="WARNING")


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    with respx.mock(base_url=LLM_BASE, assert_all_called=False) as router:
        router.post("/chat/completions").mock(side_effect=fake.respond)
        yield fake


ROOT = Path(__file__).resolve().parent.parent
