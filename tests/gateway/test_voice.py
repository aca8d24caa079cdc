"""Voice escalation (SPEC §8) through the real app: consent → one Calls.json create with the
allowed parameters, the check-and-set against concurrent triggers, refusals, Twilio errors,
the whole gather loop over signed voice webhooks, status callbacks (duplicate, out of order)
and the outcome written into the chat once. Twilio's REST API is mocked at the HTTP seam
(respx) with its wire format; the LLM is the offline responder unless a test says otherwise."""

from __future__ import annotations

import json
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from agent_core.calls import CallError, request_call
from agent_core.settings import TwilioSettings
from agent_core.store import Store, agents, keys
from channels.twilio.voice import call_status_form, voice_form
from tests.channels.twilio.wire import ACCOUNT_SID, MESSAGES_PATH, error_body, sms_form
from tests.conftest import PUBLIC_URL, drain
from tests.twilio_helpers import FakeTwilioREST, post_webhook
from tests.twilio_helpers import twilio_settings as twilio_settings_for
from workers import context
from workers.rqwire import RQJobFormat

AGENT_NUMBER = "+15550001111"
CUSTOMER = "+15557654321"
CALLS_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
ALLOWED = {"To", "From", "Url", "StatusCallback", "StatusCallbackEvent", "TimeLimit"}


class FakeCalls:
    """Twilio's Calls endpoint: records each create; answers 201 with a Call resource, or from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        # Scripted answers: a response, or a transport error raised as httpx would.
        self.script: list[httpx.Response | httpx.TransportError] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = urllib.parse.parse_qs(request.content.decode(), keep_blank_values=True)
        with self.lock:
            self.requests.append(form)
            if self.script:
                scripted = self.script.pop(0)
                if isinstance(scripted, httpx.TransportError):
                    scripted.request = request
                    raise scripted
                return scripted
        sid = "CA" + f"{len(self.requests):032x}"
        resource = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": form["To"][0],
            "from": form["From"][0],
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
        }
        return httpx.Response(201, json=resource)


@pytest.fixture
def twilio_settings() -> TwilioSettings:
    return twilio_settings_for()


@pytest.fixture
def net() -> Iterator[tuple[FakeTwilioREST, FakeCalls]]:
    messages, calls = FakeTwilioREST(), FakeCalls()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"https://api.twilio.com{MESSAGES_PATH}").mock(side_effect=messages)
        router.post(f"https://api.twilio.com{CALLS_PATH}").mock(side_effect=calls)
        yield messages, calls


@pytest.fixture
def texts(net: tuple[FakeTwilioREST, FakeCalls]) -> FakeTwilioREST:
    return net[0]


@pytest.fixture
def calls(net: tuple[FakeTwilioREST, FakeCalls]) -> FakeCalls:
    return net[1]


def make_agent(client: TestClient, admin: dict[str, str], **escalation: Any) -> dict[str, Any]:
    body = {
        "name": "Acme",
        "channels": {"numbers": [AGENT_NUMBER, f"whatsapp:{AGENT_NUMBER}"]},
        "debounce_ms": 0,
        "llm": {"provider": "offline"},
        "escalation": {"enabled": True, "from_number": AGENT_NUMBER, "max_call_s": 300, **escalation},
    }
    r = client.post("/v1/agents", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


@pytest.fixture
def agent(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    return make_agent(client, admin)


def text_in(client: TestClient, body: str, customer: str = CUSTOMER) -> None:
    r = post_webhook(client, "/twilio/messages", sms_form(Body=body, From=customer))
    assert r.status_code == 200, r.text


def the_session(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    items = client.get("/v1/chat/sessions", headers=admin).json()["data"]["items"]
    assert len(items) == 1
    r = client.get(f"/v1/chat/session/{items[0]['id']}", headers=admin)
    return r.json()["data"]  # type: ignore[no-any-return]


def consent_call(client: TestClient, admin: dict[str, str], ctx: context.WorkerContext) -> dict[str, Any]:
    text_in(client, "My parcel is lost")
    drain(ctx)
    text_in(client, "yes, call me please")
    drain(ctx)
    session = the_session(client, admin)
    assert len(session["calls"]) == 1, session
    return session


def voice(client: TestClient, path: str, call_sid: str, **extra: str) -> ET.Element:
    form = voice_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_=AGENT_NUMBER, to=CUSTOMER)
    form.update(extra)
    r = post_webhook(client, path, form)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    return ET.fromstring(r.text)


def status(client: TestClient, call_sid: str, value: str, seq: int, duration: int | None = None) -> int:
    form = call_status_form(
        call_sid=call_sid,
        account_sid=ACCOUNT_SID,
        from_=AGENT_NUMBER,
        to=CUSTOMER,
        status=value,
        duration_s=duration,
        sequence=seq,
    )
    return post_webhook(client, "/twilio/voice/status", form).status_code


def said(root: ET.Element) -> str:
    return " ".join((n.text or "") for n in root.iter("Say"))


def test_consent_places_one_call_with_exactly_the_allowed_parameters(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls, texts: FakeTwilioREST
) -> None:
    session = consent_call(client, admin, ctx)
    assert len(calls.requests) == 1
    form = calls.requests[0]
    assert set(form) == ALLOWED
    call = session["calls"][0]
    assert form["To"] == [CUSTOMER] and form["From"] == [AGENT_NUMBER]
    assert form["Url"] == [f"{PUBLIC_URL}/twilio/voice/{call['id']}"]
    assert form["StatusCallback"] == [f"{PUBLIC_URL}/twilio/voice/status"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["TimeLimit"] == ["300"]
    assert call["status"] == "queued" and call["twilio_call_sid"].startswith("CA")
    assert call["call_id"] == call["id"] and call["phone_number"] == CUSTOMER and call["placed"] is True
    assert call["chat_summary"] and "parcel" in call["chat_summary"]
    # The chat said a call is coming (through the normal delivery path).
    assert any("calling you now" in b for b in texts.bodies)
    listed = client.get(f"/v1/calls?session_id={session['id']}", headers=admin).json()["data"]
    assert [c["id"] for c in listed["items"]] == [call["id"]]
    assert client.get(f"/v1/calls/{call['id']}", headers=admin).json()["data"]["status"] == "queued"


def test_concurrent_triggers_create_one_call(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, store: Store, calls: FakeCalls
) -> None:
    text_in(client, "hello")
    drain(ctx)
    sid = the_session(client, admin)["id"]
    spec = store.run(agents.get(agent["id"]))
    assert spec is not None
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def trigger() -> None:
        own = Store(ctx.redis.__class__.from_url(ctx.redis_url, decode_responses=True), RQJobFormat())
        barrier.wait()
        try:
            own.run(request_call(session_id=sid, agent=spec, reason="x", to=None, by="op"))
            outcomes.append("ok")
        except CallError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=trigger) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1, outcomes
    assert all("already live" in o for o in outcomes if o != "ok")
    # The API refuses too, with the reason.
    r = client.post(f"/v1/chat/session/{sid}/call", json={"reason": "again"}, headers=admin)
    assert r.status_code == 422 and "already live" in r.json()["errors"][0]
    drain(ctx)
    assert len(calls.requests) == 1


def test_refusals_name_the_reason_and_change_nothing(
    client: TestClient, admin: dict[str, str], ctx: Any, calls: FakeCalls
) -> None:
    off = client.post("/v1/agents", json={"name": "NoCalls", "llm": {"provider": "offline"}}, headers=admin)
    sid = client.post(
        "/v1/chat/session", json={"agent_uuid": off.json()["data"]["id"], "customer_id": "u1"}, headers=admin
    ).json()["data"]["id"]
    r = client.post(f"/v1/chat/session/{sid}/call", json={}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0].startswith("escalation:")
    agent = make_agent(client, admin)
    sid = client.post("/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "u2"}, headers=admin).json()[
        "data"
    ]["id"]
    r = client.post(f"/v1/chat/session/{sid}/call", json={}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0].startswith("to:")
    r = client.post(f"/v1/chat/session/{sid}/call", json={"to": "+0123"}, headers=admin)
    assert r.status_code == 422 and "to" in r.json()["errors"][0]
    r = client.post("/v1/chat/session/00000000-0000-4000-8000-000000000000/call", json={}, headers=admin)
    assert r.status_code == 404
    # An SMS customer who texted STOP is never called.
    text_in(client, "STOP", customer="+15550009999")
    drain(ctx)
    items = client.get("/v1/chat/sessions?customer_id=%2B15550009999", headers=admin).json()["data"]["items"]
    r = client.post(f"/v1/chat/session/{items[0]['id']}/call", json={}, headers=admin)
    assert r.status_code == 422 and "opted out" in r.json()["errors"][0]
    # Closed sessions are not called.
    client.post(f"/v1/chat/session/{sid}/support", json={"command": "close"}, headers=admin)
    r = client.post(f"/v1/chat/session/{sid}/call", json={"to": "+15551230000"}, headers=admin)
    assert r.status_code == 422 and "closed" in r.json()["errors"][0]
    drain(ctx)
    assert calls.requests == []
    assert client.get("/v1/calls", headers=admin).json()["data"]["items"] == []


def test_429_then_created_places_exactly_one_call(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls
) -> None:
    calls.script.append(
        httpx.Response(429, json=error_body(20429, "Too Many Requests", 429), headers={"Retry-After": "0"})
    )
    text_in(client, "yes, call me")
    drain(ctx)
    from tests.gateway.test_twilio import run_scheduled

    run_scheduled(ctx)
    session = the_session(client, admin)
    assert len(calls.requests) == 2
    assert session["calls"][0]["status"] == "queued" and session["calls"][0]["twilio_call_sid"]
    run_scheduled(ctx)
    assert len(calls.requests) == 2


def test_invalid_number_fails_the_call_with_its_code_and_tells_the_chat(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls, texts: FakeTwilioREST
) -> None:
    calls.script.append(
        httpx.Response(400, json=error_body(21211, "The 'To' number is not a valid phone number.", 400))
    )
    text_in(client, "yes, call me")
    drain(ctx)
    call = the_session(client, admin)["calls"][0]
    assert call["status"] == "failed" and call["error_code"] == 21211
    assert any("couldn't reach you by phone" in b for b in texts.bodies)
    assert len(calls.requests) == 1
    # Not live any more: a new trigger is possible.
    sid = call["session_id"]
    r = client.post(f"/v1/chat/session/{sid}/call", json={}, headers=admin)
    assert r.status_code == 202, r.text


def test_forged_voice_webhooks_are_refused_and_unknown_calls_hang_up_politely(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls
) -> None:
    form = voice_form(call_sid="CA" + "1" * 32, account_sid=ACCOUNT_SID, from_=AGENT_NUMBER, to=CUSTOMER)
    r = post_webhook(client, "/twilio/voice/call_nope", form, signature="forged")
    assert r.status_code == 403
    r = post_webhook(client, "/twilio/voice/status", {**form, "CallStatus": "completed"}, signature="forged")
    assert r.status_code == 403
    root = voice(client, "/twilio/voice/call_nope", "CA" + "1" * 32)
    assert root.find("Hangup") is not None and "no longer available" in said(root)
    root = voice(client, "/twilio/voice/call_nope/turn", "CA" + "1" * 32, SpeechResult="hello")
    assert root.find("Hangup") is not None


def test_gather_call_loop_through_signed_webhooks_comes_back_into_the_chat(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls, texts: FakeTwilioREST
) -> None:
    session = consent_call(client, admin, ctx)
    call = session["calls"][0]
    cid, csid = call["id"], call["twilio_call_sid"]
    assert status(client, csid, "initiated", 0) == 200
    assert status(client, csid, "ringing", 1) == 200
    root = voice(client, f"/twilio/voice/{cid}", csid)
    gather = root.find("Gather")
    assert gather is not None and gather.get("input") == "speech"
    assert gather.get("action") == f"{PUBLIC_URL}/twilio/voice/{cid}/turn"
    assert "Acme" in said(root) and "parcel" in said(root)
    assert status(client, csid, "in-progress", 2) == 200
    root = voice(client, f"/twilio/voice/{cid}/turn", csid, SpeechResult="I want a refund for the lost parcel")
    assert root.find("Gather") is not None and said(root)
    # Silence once: asked again; twice: goodbye and hang up.
    root = voice(client, f"/twilio/voice/{cid}/turn", csid)
    assert root.find("Gather") is not None and "didn't catch" in said(root)
    root = voice(client, f"/twilio/voice/{cid}/turn", csid)
    assert root.find("Hangup") is not None and "Goodbye" in said(root)
    assert status(client, csid, "completed", 3, duration=42) == 200
    # A retried callback and a late, older one change nothing.
    assert status(client, csid, "completed", 3, duration=42) == 200
    assert status(client, csid, "ringing", 1) == 200
    drain(ctx)
    drain(ctx)
    after = the_session(client, admin)
    done = after["calls"][0]
    assert done["status"] == "completed" and done["duration_s"] == 42 and done["duration_seconds"] == 42
    assert done["started_at"] and done["ended_at"]
    roles = [t["role"] for t in done["transcript"]]
    assert roles[:2] == ["agent", "customer"] and "refund" in done["transcript"][1]["text"]
    assert done["summary"] and "refund" in done["summary"]
    assert after["metadata"]["context"][-1] == f"Phone call summary: {done['summary']}"
    thanks = [b for b in texts.bodies if b.startswith("Thanks for the call")]
    assert len(thanks) == 1 and done["summary"] in thanks[0]
    r = client.get(f"/v1/chat/session/{after['id']}/messages?include_private=1", headers=admin)
    contexts = [m for m in r.json()["data"]["items"] if m["role"] == "context"]
    assert len(contexts) == 1
    memory = client.get(f"/v1/customers/{urllib.parse.quote(CUSTOMER)}/memory?agent_uuid={agent['id']}", headers=admin)
    assert any(i.get("kind") == "call" for i in memory.json()["data"]["items"])
    # The finish job run again (a worker died after writing) writes nothing twice.
    from agent_core import calls as escalation

    assert escalation.finish(ctx.store, ctx.provider_for, cid) == "flagged"
    assert len([b for b in texts.bodies if b.startswith("Thanks for the call")]) == 1


def test_busy_says_the_call_did_not_connect(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls, texts: FakeTwilioREST
) -> None:
    call = consent_call(client, admin, ctx)["calls"][0]
    assert status(client, call["twilio_call_sid"], "busy", 2) == 200
    drain(ctx)
    assert the_session(client, admin)["calls"][0]["status"] == "busy"
    assert any("line was busy" in b and "continue here in the chat" in b for b in texts.bodies)


def test_external_voice_agent_gets_a_signed_request_and_its_result_finishes_the_call(
    client: TestClient, admin: dict[str, str], ctx: Any, calls: FakeCalls, texts: FakeTwilioREST
) -> None:
    from agent_core.events import verify_signature

    received: list[httpx.Request] = []
    with respx.mock(assert_all_called=False) as router:
        router.post("https://voice.example.com/hook").mock(
            side_effect=lambda r: received.append(r) or httpx.Response(200)
        )
        router.post(f"https://api.twilio.com{MESSAGES_PATH}").mock(side_effect=texts)
        body = {
            "name": "Ext",
            "channels": {"numbers": [AGENT_NUMBER]},
            "debounce_ms": 0,
            "llm": {"provider": "offline"},
            "webhook": {
                "url": "https://hooks.example.com/e",
                "secret": "s3cret-value",
                "events": ["call.started", "call.completed"],
            },
            "escalation": {"enabled": True, "webhook_url": "https://voice.example.com/hook"},
        }
        assert client.post("/v1/agents", json=body, headers=admin).status_code == 200
        text_in(client, "yes, call me")
        drain(ctx)
    assert calls.requests == [] and len(received) == 1
    request = received[0]
    assert verify_signature("s3cret-value", request.content, request.headers["X-Signature"])
    payload = json.loads(request.content)
    assert payload["event"] == "call.requested" and payload["to"] == CUSTOMER and payload["summary"]
    cid = payload["call_id"]
    r = client.post(
        f"/v1/calls/{cid}/result",
        json={"status": "completed", "summary": "Refund agreed.", "transcript": [{"role": "customer", "text": "hi"}]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    drain(ctx)
    done = client.get(f"/v1/calls/{cid}", headers=admin).json()["data"]
    assert done["status"] == "completed" and done["summary"] == "Refund agreed."
    assert any("Refund agreed." in b for b in texts.bodies)
    again = client.post(f"/v1/calls/{cid}/result", json={"status": "completed"}, headers=admin)
    assert again.status_code == 422
    session = the_session(client, admin)
    assert session["metadata"]["context"][-1] == "Phone call summary: Refund agreed."
    events = [json.loads(e) for e in ctx.redis.lrange(keys.OUTBOX, 0, -1)]
    assert [e["type"] for e in events if e["type"].startswith("call.")] == ["call.started", "call.completed"]
    completed = [e for e in events if e["type"] == "call.completed"]
    assert len(completed) == 1 and completed[0]["data"]["summary"] == "Refund agreed."
    assert completed[0]["data"]["call_id"] == cid


def test_erasing_the_customer_erases_their_calls(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls
) -> None:
    call = consent_call(client, admin, ctx)["calls"][0]
    r = client.delete(f"/v1/customers/{urllib.parse.quote(CUSTOMER)}", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["removed"]["calls"] == 1
    assert client.get(f"/v1/calls/{call['id']}", headers=admin).status_code == 404
    assert client.get("/v1/calls", headers=admin).json()["data"]["items"] == []
    assert status(client, call["twilio_call_sid"], "completed", 3, duration=5) == 200
    assert [k for k in ctx.redis.scan_iter("gw:call*") if not k.startswith("gw:callseq")] == []


def test_unreachable_twilio_is_retried_but_a_lost_answer_never_places_a_second_call(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls
) -> None:
    from tests.gateway.test_twilio import run_scheduled

    calls.script.append(httpx.ConnectError("connection refused"))
    text_in(client, "yes, call me")
    drain(ctx)
    run_scheduled(ctx)
    call = the_session(client, admin)["calls"][0]
    assert len(calls.requests) == 2 and call["twilio_call_sid"] and call["status"] == "queued"
    # The call ends; a second trigger's request reaches Twilio but its answer is lost.
    assert status(client, call["twilio_call_sid"], "completed", 3, duration=3) == 200
    drain(ctx)
    calls.script.append(httpx.ReadTimeout("no answer"))
    r = client.post(f"/v1/chat/session/{call['session_id']}/call", json={}, headers=admin)
    assert r.status_code == 202
    drain(ctx)
    run_scheduled(ctx)
    assert len(calls.requests) == 3
    second = client.get(f"/v1/calls/{r.json()['data']['id']}", headers=admin).json()["data"]
    assert second["status"] == "failed" and "never placed" in second["error_message"]


def test_the_agent_ends_a_gather_call_with_end_call(
    client: TestClient, admin: dict[str, str], agent: dict[str, Any], ctx: Any, calls: FakeCalls
) -> None:
    call = consent_call(client, admin, ctx)["calls"][0]
    cid, csid = call["id"], call["twilio_call_sid"]
    voice(client, f"/twilio/voice/{cid}", csid)
    root = voice(client, f"/twilio/voice/{cid}/turn", csid, SpeechResult="That's all, thanks, bye")
    assert root.find("Hangup") is not None and root.find("Gather") is None
    assert "Goodbye" in said(root)
    assert client.get(f"/v1/calls/{cid}", headers=admin).json()["data"]["transcript"][-1]["text"] == said(root)
