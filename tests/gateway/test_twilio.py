"""Twilio SMS/WhatsApp end to end in one process: signed webhooks in, real RQ workers, Twilio's
REST API and OpenAI mocked at the HTTP seam (respx) with their real wire formats."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import respx
from rq.scheduler import RQScheduler
from starlette.testclient import TestClient

from agent_core.models import Role
from agent_core.settings import TwilioSettings
from agent_core.store import Change, sessions
from channels.twilio.forms import status_form
from tests.channels.twilio.wire import ACCOUNT_SID, MESSAGES_PATH, created, sid, sms_form, whatsapp_form
from tests.conftest import LLM_BASE, PUBLIC_URL, drain
from tests.fakes import FakeLLM, completion
from tests.helpers import eventually, thread
from tests.twilio_helpers import FakeTwilioREST, post_webhook
from tests.twilio_helpers import twilio_settings as twilio_settings_for
from workers.queues import ALL_QUEUES, HELD_KEY

AGENT_NUMBER = "+15550001111"
CUSTOMER = "+15557654321"


@pytest.fixture
def llm_key() -> str:
    return "sk-test"


@pytest.fixture
def twilio_settings() -> TwilioSettings:
    return twilio_settings_for()


@pytest.fixture
def net() -> Iterator[tuple[FakeLLM, FakeTwilioREST]]:
    llm, twilio = FakeLLM(), FakeTwilioREST()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{LLM_BASE}/chat/completions").mock(side_effect=llm.respond)
        router.post(f"https://api.twilio.com{MESSAGES_PATH}").mock(side_effect=twilio)
        yield llm, twilio


@pytest.fixture
def llm(net: tuple[FakeLLM, FakeTwilioREST]) -> FakeLLM:
    return net[0]


@pytest.fixture
def twilio(net: tuple[FakeLLM, FakeTwilioREST]) -> FakeTwilioREST:
    return net[1]


@pytest.fixture
def agent(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    body = {"name": "Acme", "channels": {"numbers": [AGENT_NUMBER, f"whatsapp:{AGENT_NUMBER}"]}, "debounce_ms": 0}
    r = client.post("/v1/agents", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def r_(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def only_session(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    items = client.get("/v1/chat/sessions", headers=admin).json()["data"]["items"]
    assert len(items) == 1, items
    return items[0]  # type: ignore[no-any-return]


def run_scheduled(ctx: Any) -> None:
    """Fast-forward RQ's scheduled jobs (retries with backoff) and the deliveries held for a
    send slot, and run them."""
    for key in [f"rq:scheduled:{q}" for q in ALL_QUEUES] + [HELD_KEY]:
        for job_id in ctx.rq_redis.zrange(key, 0, -1):
            ctx.rq_redis.zadd(key, {job_id: 0})
    scheduler = RQScheduler(list(ALL_QUEUES), connection=ctx.rq_redis)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    drain(ctx)


def test_signed_webhook_is_stored_and_answered_with_empty_twiml(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    form = sms_form(Body="Where is my order?")
    r = post_webhook(client, "/twilio/messages", form)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    assert r.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert int(r.headers["content-length"]) == len(r.content)
    s = only_session(client, admin)
    assert (s["channel"], s["customer_id"], s["customer_address"]) == ("sms", CUSTOMER, CUSTOMER)
    drain(ctx)
    assert len(twilio.requests) == 1
    sent = twilio.requests[0]
    assert sent["To"] == CUSTOMER and sent["From"] == AGENT_NUMBER
    assert sent["Body"] == "echo: Where is my order?"
    assert sent["StatusCallback"] == f"{PUBLIC_URL}/twilio/messages/status"
    reply = thread(client, admin, s["id"])[-1]
    assert reply["role"] == "agent" and reply["channel_message_id"].startswith("SM") and reply["parts"] == 1
    assert reply["delivery"]["status"] == "queued"


@pytest.mark.parametrize(
    "tamper",
    ["wrong_token", "tampered_param", "http_url", "trailing_slash", "missing_header", "garbage_signature"],
)
def test_bad_signature_is_403_and_stores_nothing(
    client: TestClient, agent: dict[str, Any], redis_url: str, tamper: str
) -> None:
    form = sms_form()
    path = "/twilio/messages"
    kwargs: dict[str, Any] = {}
    if tamper == "wrong_token":
        kwargs["token"] = "0" * 32
    elif tamper == "http_url":
        kwargs["signed_url"] = PUBLIC_URL.replace("https://", "http://") + path
    elif tamper == "trailing_slash":
        kwargs["signed_url"] = PUBLIC_URL + path + "/"
    elif tamper == "missing_header":
        kwargs["signature"] = ""
    elif tamper == "garbage_signature":
        kwargs["signature"] = "bm90IGEgc2lnbmF0dXJl"
    if tamper == "tampered_param":
        from tests.twilio_helpers import sign

        good = sign(PUBLIC_URL + path, form)
        form["Body"] = "tampered"
        kwargs["signature"] = good
    r = post_webhook(client, path, form, **kwargs)
    assert r.status_code == 403
    assert r.json() == {"success": False, "errors": ["invalid or missing X-Twilio-Signature"]}
    assert r_(redis_url).keys("gw:s:*") == [] and r_(redis_url).keys("gw:dedupe:*") == []


@pytest.mark.parametrize("public", ["https://gw.example.com#rc=5", "https://gw.example.com/#rc=5&ct=2000"])
def test_fragment_in_the_configured_url_still_validates(settings: Any, redis_url: str, ctx: Any, public: str) -> None:
    from gateway.app import create_app

    app_settings = settings.model_copy(
        update={"app": settings.app.model_copy(update={"public_base_url": public.rstrip("/")})}
    )
    with TestClient(create_app(app_settings, redis_url)) as c:
        form = sms_form()
        r = post_webhook(c, "/twilio/messages", form, signed_url="https://gw.example.com/twilio/messages")
        assert r.status_code == 200


def test_unknown_number_gets_200_is_counted_and_stores_nothing(
    client: TestClient, agent: dict[str, Any], redis_url: str
) -> None:
    r = post_webhook(client, "/twilio/messages", sms_form(To="+15559990000"))
    assert r.status_code == 200 and r.content.endswith(b"<Response/>")
    assert r_(redis_url).keys("gw:s:*") == []
    assert r_(redis_url).hget("gw:counters", "unknown_number") == "1"


def test_malformed_form_with_valid_signature_is_400(client: TestClient, agent: dict[str, Any], redis_url: str) -> None:
    form = sms_form()
    del form["MessageSid"]
    r = post_webhook(client, "/twilio/messages", form)
    assert r.status_code == 400 and "MessageSid" in r.json()["errors"][0]
    assert r_(redis_url).keys("gw:s:*") == []


@pytest.mark.parametrize("path", ["/twilio/messages", "/twilio/messages/status"])
def test_webhook_paths_refuse_other_methods_and_oversized_bodies_in_the_envelope(
    client: TestClient, agent: dict[str, Any], redis_url: str, path: str
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, path)
        assert r.status_code == 405, method
        assert r.headers["allow"] == "POST"
        assert r.json() == {"success": False, "errors": [f"method not allowed: {method} {path}"]}
    huge = sms_form(Body="x" * 2_000_000)
    r = post_webhook(client, path, huge)
    assert r.status_code == 413 and r.json()["errors"][0].startswith("body: larger than")
    assert r_(redis_url).keys("gw:s:*") == []


def test_empty_message_without_media_is_ignored(client: TestClient, agent: dict[str, Any], redis_url: str) -> None:
    assert post_webhook(client, "/twilio/messages", sms_form(Body="   ")).status_code == 200
    assert r_(redis_url).keys("gw:s:*") == []


def test_duplicate_message_sid_is_stored_and_answered_once(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    form = sms_form(Body="once please")
    results: list[int] = []

    def fire() -> None:
        results.append(post_webhook(client, "/twilio/messages", form).status_code)

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    retry = post_webhook(
        client,
        "/twilio/messages",
        sms_form(MessageSid=sid(), Body="other"),
        headers={"I-Twilio-Idempotency-Token": "tok-1"},
    )
    again = post_webhook(
        client,
        "/twilio/messages",
        sms_form(MessageSid=sid(), Body="other"),
        headers={"I-Twilio-Idempotency-Token": "tok-1"},
    )
    assert retry.status_code == again.status_code == 200
    drain(ctx)
    s = only_session(client, admin)
    customer = [m["text"] for m in thread(client, admin, s["id"]) if m["role"] == "customer"]
    assert customer == ["once please", "other"]
    assert [m["role"] for m in thread(client, admin, s["id"]) if not m.get("private")].count("agent") == 1
    assert len(twilio.requests) == 1


def test_burst_of_three_sms_gets_one_reply_that_saw_all(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], llm: FakeLLM, twilio: FakeTwilioREST, workers: Any
) -> None:
    client.patch(f"/v1/agents/{agent['id']}", json={"debounce_ms": 400}, headers=admin)
    for text in ("hi", "my order", "is late"):
        post_webhook(client, "/twilio/messages", sms_form(Body=text))
    eventually(lambda: len(twilio.requests) == 1)
    time.sleep(0.3)
    assert len(llm.requests) == 1
    assert [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user"] == ["hi", "my order", "is late"]
    assert len(twilio.requests) == 1


def test_long_reply_goes_out_in_three_ordered_parts(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], llm: FakeLLM, twilio: FakeTwilioREST, ctx: Any
) -> None:
    sentences = [f"Sentence number {i} explains one more detail of your order status." for i in range(62)]
    long_text = " ".join(sentences)
    assert 3200 < len(long_text) <= 4300
    llm.handler = lambda body: completion(long_text)
    post_webhook(client, "/twilio/messages", sms_form(Body="tell me everything"))
    drain(ctx)
    assert len(twilio.requests) == 3
    assert all(len(b) <= 1600 for b in twilio.bodies)
    assert [b[:6] for b in twilio.bodies] == ["(1/3) ", "(2/3) ", "(3/3) "]
    assert " ".join(b[6:] for b in twilio.bodies) == long_text
    assert {(r["To"], r["From"]) for r in twilio.requests} == {(CUSTOMER, AGENT_NUMBER)}
    reply = thread(client, admin, only_session(client, admin)["id"])[-1]
    assert reply["parts"] == 3 and len(reply["meta"]["sids"]) == 3


def test_twilio_500_then_201_delivers_exactly_once(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    twilio.fail(500, 20500, "Internal Server Error")
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    assert len(twilio.requests) == 1
    reply = thread(client, admin, only_session(client, admin)["id"])[-1]
    assert reply["delivery"]["status"] == "pending"
    run_scheduled(ctx)
    assert len(twilio.requests) == 2
    reply = thread(client, admin, only_session(client, admin)["id"])[-1]
    assert reply["delivery"]["status"] == "queued" and reply["channel_message_id"]
    run_scheduled(ctx)
    assert len(twilio.requests) == 2


def test_500_on_part_two_resends_only_the_missing_parts(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], llm: FakeLLM, twilio: FakeTwilioREST, ctx: Any
) -> None:
    long_text = " ".join(f"Part text sentence {i} with words." for i in range(110))
    llm.handler = lambda body: completion(long_text)
    twilio.script.append(created)
    twilio.fail(503, 20503, "Service Unavailable")
    post_webhook(client, "/twilio/messages", sms_form(Body="long please"))
    drain(ctx)
    run_scheduled(ctx)
    prefixes = [b[:6] for b in twilio.bodies]
    assert prefixes == ["(1/3) ", "(2/3) ", "(2/3) ", "(3/3) "]
    reply = thread(client, admin, only_session(client, admin)["id"])[-1]
    assert len(reply["meta"]["sids"]) == 3 and reply["delivery"]["status"] == "queued"


def test_429_retry_after_is_honoured(
    client: TestClient, agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    twilio.fail(429, 20429, "Too Many Requests", headers={"Retry-After": "42"})
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    before = time.time()
    drain(ctx)
    scheduled = ctx.rq_redis.zrange("rq:scheduled:outbound", 0, -1, withscores=True)
    assert len(scheduled) == 1
    assert 40 <= scheduled[0][1] - before <= 45
    run_scheduled(ctx)
    assert len(twilio.requests) == 2


def test_21610_marks_failed_is_not_retried_and_session_shows_opt_out(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    twilio.fail(400, 21610, "Attempt to send to unsubscribed recipient")
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    run_scheduled(ctx)
    assert len(twilio.requests) == 1
    s = only_session(client, admin)
    assert s["opted_out"] is True
    assert s["delivery_error"]["code"] == 21610
    reply = thread(client, admin, s["id"])[-1]
    assert reply["delivery"]["status"] == "failed" and reply["delivery"]["error_code"] == 21610


def test_stop_start_help(
    client: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    agent: dict[str, Any],
    llm: FakeLLM,
    twilio: FakeTwilioREST,
    ctx: Any,
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="STOP"))
    drain(ctx)
    s = only_session(client, admin)
    assert s["opted_out"] is True and llm.requests == [] and twilio.requests == []
    post_webhook(client, "/twilio/messages", sms_form(Body="are you there?"))
    drain(ctx)
    assert llm.requests == [] and twilio.requests == []
    r = client.post(f"/v1/chat/session/{s['id']}/support", json={"command": "tell", "message": "hi"}, headers=operator)
    assert r.status_code == 422 and "opted out" in r.json()["errors"][0]
    post_webhook(client, "/twilio/messages", sms_form(Body="start"))
    drain(ctx)
    assert only_session(client, admin)["opted_out"] is False and twilio.requests == []
    post_webhook(client, "/twilio/messages", sms_form(Body="Help"))
    drain(ctx)
    assert llm.requests == [] and twilio.requests == []
    post_webhook(client, "/twilio/messages", sms_form(Body="I'm back"))
    drain(ctx)
    assert len(llm.requests) == 1 and len(twilio.requests) == 1
    users = [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user"]
    assert "STOP" not in users and "Help" not in users and users[-1] == "I'm back"


def test_whatsapp_addressing_both_ways(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, llm: FakeLLM, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", whatsapp_form(Body="Hi there"))
    drain(ctx)
    s = only_session(client, admin)
    assert (s["channel"], s["customer_id"], s["customer_address"]) == ("whatsapp", CUSTOMER, f"whatsapp:{CUSTOMER}")
    assert s["metadata"]["input_fields"] == {"name": "Ada Lovelace"}
    assert (
        twilio.requests[0]["To"] == f"whatsapp:{CUSTOMER}" and twilio.requests[0]["From"] == f"whatsapp:{AGENT_NUMBER}"
    )
    assert "- name: Ada Lovelace" in llm.requests[0]["messages"][0]["content"]


def test_mms_media_is_kept_and_described_to_the_agent(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], llm: FakeLLM, ctx: Any
) -> None:
    form = sms_form(
        Body="see attached",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/media/ME2",
        MediaContentType1="application/pdf",
    )
    post_webhook(client, "/twilio/messages", form)
    drain(ctx)
    msg = next(m for m in thread(client, admin, only_session(client, admin)["id"]) if m["role"] == "customer")
    assert msg["media"] == [
        {"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/media/ME2", "content_type": "application/pdf"},
    ]
    user = next(m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user")
    assert "[The customer sent an image, a file:" in user


def test_whatsapp_window_expiry_blocks_free_text_and_template_works(
    client: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    agent: dict[str, Any],
    twilio: FakeTwilioREST,
    ctx: Any,
    store: Any,
) -> None:
    post_webhook(client, "/twilio/messages", whatsapp_form(Body="Hi"))
    drain(ctx)
    s = only_session(client, admin)
    assert len(twilio.requests) == 1
    store.run(sessions.commit(s["id"], Change(set={"last_customer_message_at": "2020-01-01T00:00:00.000Z"})))
    r = client.post(
        f"/v1/chat/session/{s['id']}/support", json={"command": "tell", "message": "late"}, headers=operator
    )
    assert r.status_code == 422
    assert r.json()["errors"] == ["message: outside the WhatsApp 24-hour window; send a template"]
    # An AI reply that would go out after the window closed is dropped with the reason.
    at = "2026-01-01T00:00:00.000Z"
    draft = sessions.new_message(
        Role.agent, "late AI text", created_at=at, delivery={"status": "pending", "updated_at": at}
    )
    res = store.run(sessions.commit(s["id"], Change(messages=[draft])))

    assert ctx.deliverer.deliver(s["id"], draft["id"]) == "dropped"
    dropped = thread(client, admin, s["id"])[-1]
    assert dropped["seq"] == res.seqs[0] and dropped["delivery"]["status"] == "dropped"
    assert dropped["delivery"]["error_message"] == "outside the WhatsApp 24-hour window"
    body = {"content_sid": "HX" + "a" * 32, "content_variables": {"1": "Ada", "2": "order 42"}}
    r = client.post(f"/v1/chat/session/{s['id']}/template", json=body, headers=operator)
    assert r.status_code == 200 and r.json()["data"]["state"] == "ok"
    drain(ctx)
    sent = twilio.requests[-1]
    assert sent["ContentSid"] == "HX" + "a" * 32
    assert json.loads(sent["ContentVariables"]) == {"1": "Ada", "2": "order 42"}
    assert "Body" not in sent and sent["To"] == f"whatsapp:{CUSTOMER}"
    assert len(twilio.requests) == 2
    bad = client.post(f"/v1/chat/session/{s['id']}/template", json={"content_sid": "nope"}, headers=operator)
    assert bad.status_code == 422 and bad.json()["errors"][0].startswith("content_sid: ")


def test_status_callbacks_out_of_order_end_delivered(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    s = only_session(client, admin)
    reply = thread(client, admin, s["id"])[-1]
    msid = reply["channel_message_id"]

    def status(value: str, error_code: int | None = None, error_message: str | None = None) -> int:
        form = status_form(
            message_sid=msid,
            account_sid=ACCOUNT_SID,
            status=value,
            from_=AGENT_NUMBER,
            to=CUSTOMER,
            error_code=error_code,
            error_message=error_message,
        )
        return post_webhook(client, "/twilio/messages/status", form).status_code

    assert status("delivered") == 200
    assert status("sent") == 200
    assert status("delivered") == 200
    reply = thread(client, admin, s["id"])[-1]
    assert reply["delivery"]["status"] == "delivered"
    assert status("failed", 30003, "Unreachable destination handset") == 200
    assert thread(client, admin, s["id"])[-1]["delivery"]["status"] == "delivered"
    # The late ones changed nothing: no delivery error on the session, counted as stale.
    assert not only_session(client, admin).get("delivery_error")
    from tests.gateway.test_metrics import scrape, total

    assert total(scrape(client), "chatgw_webhooks_total", route="/twilio/messages/status", outcome="stale") == 2
    bad = post_webhook(client, "/twilio/messages/status", {"MessageSid": msid, "MessageStatus": "sent"}, token="0" * 32)
    assert bad.status_code == 403


def test_failed_status_surfaces_on_the_session(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    s = only_session(client, admin)
    msid = thread(client, admin, s["id"])[-1]["channel_message_id"]
    form = status_form(
        message_sid=msid,
        account_sid=ACCOUNT_SID,
        status="undelivered",
        from_=AGENT_NUMBER,
        to=CUSTOMER,
        error_code=30005,
        error_message="Unknown destination handset",
    )
    assert post_webhook(client, "/twilio/messages/status", form).status_code == 200
    s = only_session(client, admin)
    assert s["delivery_error"]["code"] == 30005
    delivery = thread(client, admin, s["id"])[-1]["delivery"]
    assert (delivery["status"], delivery["error_code"], delivery["error_message"]) == (
        "undelivered",
        30005,
        "Unknown destination handset",
    )


def test_operator_takeover_message_is_delivered_as_the_operator(
    client: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    agent: dict[str, Any],
    twilio: FakeTwilioREST,
    ctx: Any,
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="hello"))
    drain(ctx)
    s = only_session(client, admin)
    r = client.post(
        f"/v1/chat/session/{s['id']}/support", json={"command": "takeover", "message": "Alice here"}, headers=operator
    )
    assert r.status_code == 200
    drain(ctx)
    assert twilio.bodies[-1] == "Alice here" and twilio.requests[-1]["To"] == CUSTOMER
    op = next(m for m in thread(client, admin, s["id"]) if m["role"] == "operator")
    assert op["author"] == "alice@example.com" and op["delivery"]["status"] == "queued"


def test_signature_checks_can_be_disabled_explicitly_in_development(
    settings: Any, redis_url: str, ctx: Any, agent: Any
) -> None:
    from gateway.app import create_app

    off = settings.model_copy(update={"twilio": settings.twilio.model_copy(update={"validate_signatures": False})})
    with TestClient(create_app(off, redis_url)) as c:
        assert c.post("/twilio/messages", data=sms_form(Body="unsigned")).status_code == 200
    assert r_(redis_url).keys("gw:s:*") != []


def messages_of(client: TestClient, admin: dict[str, str], sid: str) -> list[dict[str, Any]]:
    return thread(client, admin, sid, private=False)


def test_a_customer_who_moves_from_sms_to_whatsapp_is_answered_on_whatsapp(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="Hi by SMS"))
    drain(ctx)
    assert (twilio.requests[-1]["To"], twilio.requests[-1]["From"]) == (CUSTOMER, AGENT_NUMBER)
    post_webhook(client, "/twilio/messages", whatsapp_form(Body="Now on WhatsApp"))
    drain(ctx)
    assert len(twilio.requests) == 2
    reply = twilio.requests[-1]
    assert (reply["To"], reply["From"]) == (f"whatsapp:{CUSTOMER}", f"whatsapp:{AGENT_NUMBER}")
    assert reply["Body"] == "echo: Now on WhatsApp"
    # One session that shows the channel now in use; each message says its own channel.
    s = only_session(client, admin)
    assert (s["channel"], s["customer_id"], s["customer_address"]) == ("whatsapp", CUSTOMER, f"whatsapp:{CUSTOMER}")
    thread_ = messages_of(client, admin, s["id"])
    assert [(m["role"], m["channel"]) for m in thread_] == [
        ("customer", "sms"),
        ("agent", "sms"),
        ("customer", "whatsapp"),
        ("agent", "whatsapp"),
    ]
    # The listing filter is exact: the session is listed under the channel it is on now.
    by = {
        c: client.get(f"/v1/chat/sessions?channel={c}", headers=admin).json()["data"]["items"]
        for c in ("sms", "whatsapp")
    }
    assert [x["id"] for x in by["whatsapp"]] == [s["id"]] and by["sms"] == []


def test_an_operator_reaches_the_customer_on_the_channel_they_used_last(
    client: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    agent: dict[str, Any],
    twilio: FakeTwilioREST,
    ctx: Any,
) -> None:
    post_webhook(client, "/twilio/messages", whatsapp_form(Body="Hello on WhatsApp"))
    drain(ctx)
    post_webhook(client, "/twilio/messages", sms_form(Body="Back on SMS"))
    drain(ctx)
    sid = only_session(client, admin)["id"]
    r = client.post(f"/v1/chat/session/{sid}/support", json={"command": "tell", "message": "On it"}, headers=operator)
    assert r.status_code == 200, r.text
    drain(ctx)
    told = twilio.requests[-1]
    assert (told["To"], told["From"], told["Body"]) == (CUSTOMER, AGENT_NUMBER, "On it")


def test_an_opt_out_holds_on_its_own_channel_only(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, llm: FakeLLM, ctx: Any
) -> None:
    post_webhook(client, "/twilio/messages", sms_form(Body="STOP"))
    drain(ctx)
    assert only_session(client, admin)["opted_out"] is True
    # STOP on SMS does not silence WhatsApp...
    post_webhook(client, "/twilio/messages", whatsapp_form(Body="Hi on WhatsApp"))
    drain(ctx)
    s = only_session(client, admin)
    assert s["opted_out"] is False and s["channel"] == "whatsapp"
    assert [r["To"] for r in twilio.requests] == [f"whatsapp:{CUSTOMER}"]
    # ...and SMS stays silenced: a message there is stored, not answered, and nothing is sent.
    post_webhook(client, "/twilio/messages", sms_form(Body="Still there by SMS?"))
    drain(ctx)
    s = only_session(client, admin)
    assert s["opted_out"] is True and s["channel"] == "sms"
    assert len(twilio.requests) == 1
    assert [m["text"] for m in messages_of(client, admin, s["id"])][-1] == "Still there by SMS?"


def test_a_reply_whose_worker_died_before_sending_is_delivered_by_the_task_sweep_once(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], twilio: FakeTwilioREST, ctx: Any
) -> None:
    from agent_core.store import Task, Work, tasks
    from agent_core.store.work import GRACE_MS
    from workers.queues import enqueue_work

    later = time.time() * 1000 + GRACE_MS[Task.deliver] + 1_000
    # A delivered reply settles its safety entry: nothing comes due for it.
    post_webhook(client, "/twilio/messages", sms_form(Body="first"))
    drain(ctx)
    assert len(twilio.requests) == 1
    assert ctx.store.run(tasks.claim_due(at_ms=later)) == []
    # The turn stores its reply, then its worker dies before the inline delivery.
    deliver, ctx.turn_deps.deliver = ctx.turn_deps.deliver, None
    try:
        post_webhook(client, "/twilio/messages", sms_form(Body="second"))
        drain(ctx)
    finally:
        ctx.turn_deps.deliver = deliver
    s = only_session(client, admin)
    reply = thread(client, admin, s["id"])[-1]
    assert reply["delivery"]["status"] == "pending" and len(twilio.requests) == 1
    assert ctx.store.run(tasks.claim_due(at_ms=time.time() * 1000)) == []  # not before its grace
    due = ctx.store.run(tasks.claim_due(at_ms=later))
    assert due == [Work.deliver(s["id"], reply["id"])]
    for work in due:
        enqueue_work(ctx.rq_redis, work)
    drain(ctx)
    assert [r["Body"] for r in twilio.requests][-1] == "echo: second" and len(twilio.requests) == 2
    assert thread(client, admin, s["id"])[-1]["delivery"]["status"] == "queued"
