"""/metrics after real traffic: signed Twilio webhooks in, real RQ workers, OpenAI, Twilio's
REST API and an agent's event receiver mocked at the HTTP seam. Every family is read back
from a scrape, before and after."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from agent_core.settings import Settings, TwilioSettings
from channels.twilio.forms import status_form
from gateway.app import create_app
from tests.channels.twilio.wire import ACCOUNT_SID, MESSAGES_PATH, sms_form
from tests.conftest import LLM_BASE, drain
from tests.fakes import echo, last_user_text
from tests.helpers import eventually, serving, thread
from tests.twilio_helpers import FakeTwilioREST, post_webhook
from tests.twilio_helpers import twilio_settings as twilio_settings_for
from workers import jobs

AGENT_NUMBER = "+15550001111"
CUSTOMER = "+15557654321"
OTHER_CUSTOMER = "+15557650000"
HOOK = "https://hooks.example.com/chat"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One SDK retry, so a 500 from the model is retried (and counted) once.
    return settings.model_copy(update={"llm": settings.llm.model_copy(update={"llm_max_retries": 1})})


@pytest.fixture
def twilio_settings() -> TwilioSettings:
    return twilio_settings_for()


def scrape_text(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return scrape_text(r.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


class Network:
    """OpenAI (a 500 the SDK retries first, a 400 for texts asking for it), Twilio's REST
    API, and an agent's event receiver (refuses its first event)."""

    def __init__(self) -> None:
        self.llm_calls = 0
        self.twilio = FakeTwilioREST()
        self.events: list[int] = []
        self.lock = threading.Lock()

    def llm(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.llm_calls += 1
            first = self.llm_calls == 1
        if first:
            error = {"error": {"message": "boom", "type": "server_error"}}
            return httpx.Response(500, json=error, headers={"retry-after-ms": "1"})
        body = json.loads(request.content)
        if "refuse" in last_user_text(body):
            return httpx.Response(400, json={"error": {"message": "bad request", "type": "invalid_request_error"}})
        return httpx.Response(200, json=echo(body))

    def receiver(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.events.append(1)
            status = 500 if len(self.events) == 1 else 204
        return httpx.Response(status)


@pytest.fixture
def net() -> Iterator[Network]:
    network = Network()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{LLM_BASE}/chat/completions").mock(side_effect=network.llm)
        router.post(f"https://api.twilio.com{MESSAGES_PATH}").mock(side_effect=network.twilio)
        router.post(HOOK).mock(side_effect=network.receiver)
        yield network


@pytest.fixture
def agent(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    body = {
        "name": "Acme",
        "channels": {"numbers": [AGENT_NUMBER]},
        "debounce_ms": 0,
        "webhook": {"url": HOOK, "secret": "whsec_0123456789", "events": ["session.created"]},
    }
    r = client.post("/v1/agents", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_a_scrape_after_traffic_shows_every_family_moving(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], net: Network, ctx: Any
) -> None:
    before = scrape(client)

    first = sms_form(Body="hello")
    assert post_webhook(client, "/twilio/messages", first).status_code == 200
    assert post_webhook(client, "/twilio/messages", first).status_code == 200
    assert post_webhook(client, "/twilio/messages", sms_form(Body="hi"), token="0" * 32).status_code == 403
    assert post_webhook(client, "/twilio/messages", sms_form(To="+15559990000")).status_code == 200
    drain(ctx)
    sid = client.get("/v1/chat/sessions", headers=admin).json()["data"]["items"][0]["id"]
    reply = thread(client, admin, sid)[-1]
    assert reply["text"] == "echo: hello"
    delivered = status_form(
        message_sid=reply["channel_message_id"],
        account_sid=ACCOUNT_SID,
        status="delivered",
        from_=AGENT_NUMBER,
        to=CUSTOMER,
    )
    assert post_webhook(client, "/twilio/messages/status", delivered).status_code == 200
    net.twilio.fail(400, 21610, "Attempt to send to unsubscribed recipient")
    assert post_webhook(client, "/twilio/messages", sms_form(From=OTHER_CUSTOMER, Body="refuse")).status_code == 200
    drain(ctx)
    assert jobs.pump_events() > 0
    drain(ctx)
    assert len(net.events) == 2
    assert client.get(f"/v1/chat/session/{sid}", headers=admin).status_code == 200
    assert client.get("/nowhere/42").status_code == 404

    scraped = client.get("/metrics").text
    after = scrape_text(scraped)

    http = "chatgw_http_request_duration_seconds"
    webhook_route = {"method": "POST", "route": "/twilio/messages"}
    assert moved(before, after, f"{http}_count", **webhook_route, status="200") == 4
    assert moved(before, after, f"{http}_count", **webhook_route, status="403") == 1
    assert moved(before, after, f"{http}_sum", **webhook_route) > 0
    assert moved(before, after, f"{http}_bucket", **webhook_route, status="200", le="+Inf") == 4
    template = {"method": "GET", "route": "/v1/chat/session/{session_id}", "status": "200"}
    assert moved(before, after, f"{http}_count", **template) == 1
    assert moved(before, after, f"{http}_count", route="unmatched", status="404") == 1
    # Route templates, never raw paths: no session id or customer number appears in any label.
    assert sid not in scraped and CUSTOMER not in scraped and "nowhere" not in scraped

    webhooks = "chatgw_webhooks_total"
    for outcome, n in (("accepted", 2), ("duplicate", 1), ("forged", 1), ("unknown_number", 1)):
        assert moved(before, after, webhooks, route="/twilio/messages", outcome=outcome) == n, outcome
    assert moved(before, after, webhooks, route="/twilio/messages/status", outcome="applied") == 1
    assert moved(before, after, "chatgw_delivery_statuses_total", status="delivered", error_code="none") == 1

    turn = "chatgw_turn_duration_seconds"
    assert moved(before, after, f"{turn}_count", outcome="replied") == 2
    assert moved(before, after, f"{turn}_sum") > 0
    assert moved(before, after, "chatgw_turn_queue_wait_seconds_count") == 2
    assert moved(before, after, "chatgw_turn_queue_wait_seconds_sum") > 0
    cpu = "chatgw_job_cpu_seconds"
    assert moved(before, after, f"{cpu}_count", job="turn") == 2
    assert moved(before, after, f"{cpu}_sum", job="turn") > 0
    assert moved(before, after, f"{cpu}_count", job="event") == 2

    llm = "chatgw_llm_request_duration_seconds"
    chat = {"provider": "openai", "purpose": "chat"}
    assert moved(before, after, f"{llm}_count", **chat, outcome="ok") == 1
    assert moved(before, after, f"{llm}_count", **chat, outcome="error") == 1
    assert moved(before, after, f"{llm}_sum", **chat) > 0
    assert moved(before, after, "chatgw_llm_errors_total", **chat, kind="error") == 1
    assert moved(before, after, "chatgw_llm_retries_total", provider="openai") == 1

    delivery = "chatgw_delivery_duration_seconds"
    assert moved(before, after, f"{delivery}_count", outcome="sent") == 1
    assert moved(before, after, f"{delivery}_count", outcome="failed") == 1
    assert moved(before, after, f"{delivery}_sum") > 0
    errors = {"channel": "sms", "code": "21610", "retryable": "false"}
    assert moved(before, after, "chatgw_delivery_errors_total", **errors) == 1

    event = "chatgw_event_delivery_duration_seconds"
    assert moved(before, after, f"{event}_count", outcome="retrying") == 1
    assert moved(before, after, f"{event}_count", outcome="delivered") == 1
    assert moved(before, after, f"{event}_sum") > 0


def test_histogram_buckets_are_cumulative_and_end_at_the_count(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], net: Network, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    after = scrape(client)
    for name in ("chatgw_turn_duration_seconds", "chatgw_http_request_duration_seconds"):
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for (n, labels), value in after.items():
            if n == f"{name}_bucket":
                rest = tuple(kv for kv in labels if kv[0] != "le")
                series.setdefault(rest, []).append((float(dict(labels)["le"]), value))
        assert series, name
        for rest, buckets in series.items():
            counts = [v for _, v in sorted(buckets)]
            assert counts == sorted(counts), (name, rest)
            assert counts[-1] == after[f"{name}_count", rest], (name, rest)


def test_metrics_token_guards_metrics_but_not_health(settings: Settings, redis_url: str, ctx: Any) -> None:
    token = "m" * 24
    guarded = settings.model_copy(update={"app": settings.app.model_copy(update={"metrics_token": SecretStr(token)})})
    with TestClient(create_app(guarded, redis_url)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "chatgw_sessions" in ok.text
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code in (200, 503)


@pytest.fixture
def live(settings: Settings, redis_url: str, ctx: Any) -> Iterator[str]:
    with serving(create_app(settings, redis_url)) as url:
        yield url


def test_open_sse_streams_are_a_gauge_and_a_closed_one_is_timed(
    live: str, admin: dict[str, str], api: dict[str, str]
) -> None:
    def samples() -> Samples:
        return scrape_text(httpx.get(live + "/metrics").text)

    agent = httpx.post(live + "/v1/agents", json={"name": "A"}, headers=admin).json()["data"]
    sid = httpx.post(
        live + "/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c"}, headers=api
    ).json()["data"]["id"]
    assert total(samples(), "chatgw_sse_streams_open") == 0
    events = {"route": "/v1/chat/session/{session_id}/events", "status": "200"}
    with httpx.stream("GET", f"{live}/v1/chat/session/{sid}/events", headers=api, timeout=20) as stream:
        lines = stream.iter_lines()  # held: a dropped iterator closes the connection
        assert next(lines) == "retry: 3000"
        assert total(samples(), "chatgw_sse_streams_open") == 1
        assert total(samples(), "chatgw_http_request_duration_seconds_count", **events) == 0
    eventually(lambda: total(samples(), "chatgw_sse_streams_open") == 0)
    eventually(lambda: total(samples(), "chatgw_http_request_duration_seconds_count", **events) == 1)
