"""The web widget's public API (SPEC §14) through the real app and Redis: origins and CORS,
visitor tokens, identity verification, lead forms, abuse limits, and what a visitor may see."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from agent_core.settings import Settings
from agent_core.widget import identity_hash
from gateway.app import create_app
from tests.conftest import drain
from tests.gateway import test_sse
from tests.gateway.test_sse import read_events

SITE = "https://shop.example.com"
OTHER = "https://evil.example.net"
SECRET = "identity-secret-0123456789"
LEAD = {
    "fields": [
        {"name": "name", "label": "Name", "type": "text", "required": True},
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "phone", "label": "Phone", "type": "tel"},
    ]
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    app = settings.app.model_copy(
        update={
            "widget_messages_per_minute_visitor": 3,
            "widget_sessions_per_hour_ip": 4,
            "widget_max_message_chars": 50,
        }
    )
    return settings.model_copy(update={"app": app})


def make_agent(client: TestClient, admin: dict[str, str], **widget: Any) -> dict[str, Any]:
    body = {
        "name": "Shop",
        "welcome_message": "Hello from the shop!",
        "widget": {"enabled": True, "allowed_origins": [SITE], **widget},
    }
    r = client.post("/v1/agents", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def start(client: TestClient, key: str, origin: str = SITE, **body: Any) -> httpx.Response:
    return client.post("/widget/v1/sessions", json={"key": key, **body}, headers={"Origin": origin})


def as_visitor(token: str, origin: str = SITE) -> dict[str, str]:
    return {"Origin": origin, "Authorization": f"Bearer {token}"}


def stored_sessions(client: TestClient, admin: dict[str, str]) -> int:
    return int(client.get("/v1/chat/stats", headers=admin).json()["data"]["total"])


def test_enabling_the_widget_makes_a_public_key_that_rotate_replaces(client: TestClient, admin: dict[str, str]) -> None:
    plain = client.post("/v1/agents", json={"name": "No widget"}, headers=admin).json()["data"]
    assert plain["widget"]["public_key"] is None
    agent = make_agent(client, admin, allowed_origins=["HTTPS://Shop.Example.com:443/"])
    key = agent["widget"]["public_key"]
    assert key.startswith("pk_") and agent["widget"]["allowed_origins"] == [SITE]
    again = client.patch(f"/v1/agents/{agent['id']}", json={"widget": {"title": "Help"}}, headers=admin).json()
    assert again["data"]["widget"]["public_key"] == key, "a change keeps the key"
    rotated = client.post(f"/v1/agents/{agent['id']}/widget/rotate_key", headers=admin).json()["data"]
    new_key = rotated["widget"]["public_key"]
    assert new_key != key
    assert start(client, key).status_code == 404
    assert start(client, new_key).status_code == 200


def test_a_body_cannot_choose_the_key_and_an_enabled_widget_needs_origins(
    client: TestClient, admin: dict[str, str]
) -> None:
    chosen = {"name": "X", "widget": {"enabled": True, "allowed_origins": [SITE], "public_key": "pk_" + "a" * 24}}
    r = client.post("/v1/agents", json=chosen, headers=admin)
    assert r.status_code == 422 and "widget.public_key" in r.text
    r = client.post("/v1/agents", json={"name": "X", "widget": {"enabled": True}}, headers=admin)
    assert r.status_code == 422 and "allowed_origins" in r.text
    r = client.post(
        "/v1/agents", json={"name": "X", "widget": {"allowed_origins": ["https://a.com/path"]}}, headers=admin
    )
    assert r.status_code == 422 and "widget.allowed_origins" in r.text


def test_the_identity_secret_is_write_only(client: TestClient, admin: dict[str, str], operator: dict[str, str]) -> None:
    agent = make_agent(client, admin, identity_secret=SECRET)
    for read in (agent, client.get(f"/v1/agents/{agent['id']}", headers=operator).json()["data"]):
        assert "identity_secret" not in read["widget"] and read["widget"]["identity_secret_set"] is True
        assert SECRET not in str(read)
    patched = client.patch(f"/v1/agents/{agent['id']}", json={"widget": {"title": "T"}}, headers=admin).json()["data"]
    assert patched["widget"]["identity_secret_set"] is True, "a PATCH without it keeps it"
    cleared = client.patch(f"/v1/agents/{agent['id']}", json={"widget": {"identity_secret": None}}, headers=admin)
    assert cleared.json()["data"]["widget"]["identity_secret_set"] is False


def test_a_missing_or_foreign_origin_is_refused_and_nothing_is_stored(
    client: TestClient, admin: dict[str, str]
) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    no_origin = client.post("/widget/v1/sessions", json={"key": key})
    assert no_origin.status_code == 403 and "Origin" in no_origin.json()["errors"][0]
    foreign = start(client, key, OTHER)
    assert foreign.status_code == 403 and OTHER in foreign.json()["errors"][0]
    assert "access-control-allow-origin" not in foreign.headers
    assert client.get(f"/widget/v1/config?key={key}", headers={"Origin": OTHER}).status_code == 403
    assert stored_sessions(client, admin) == 0
    # A good visitor token from a foreign origin opens nothing either.
    token = start(client, key).json()["data"]["visitor_token"]
    r = client.post("/widget/v1/messages", json={"content": "hi"}, headers=as_visitor(token, OTHER))
    assert r.status_code == 403
    assert client.get("/widget/v1/messages", headers=as_visitor(token, OTHER)).status_code == 403


def test_a_same_origin_request_without_origin_counts_as_the_gateways_own(
    client: TestClient, admin: dict[str, str]
) -> None:
    # Browsers send no Origin on a same-origin GET (the demo page, served by the gateway).
    own = make_agent(client, admin, allowed_origins=["http://testserver"])["widget"]["public_key"]
    same = {"Sec-Fetch-Site": "same-origin"}
    assert client.get(f"/widget/v1/config?key={own}", headers=same).status_code == 200
    assert client.get(f"/widget/v1/config?key={own}", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    other = make_agent(client, admin)["widget"]["public_key"]
    assert client.get(f"/widget/v1/config?key={other}", headers=same).status_code == 403


def test_cors_is_exactly_the_allowed_origins(client: TestClient, admin: dict[str, str]) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
    ok = client.options("/widget/v1/messages", headers={"Origin": SITE, **pre})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == SITE
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers
    bad = client.options("/widget/v1/messages", headers={"Origin": OTHER, **pre})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    r = start(client, key)
    assert r.headers["access-control-allow-origin"] == SITE and r.headers["vary"] == "Origin"
    # Errors carry CORS headers too, so the widget can read them.
    invalid = client.post(
        "/widget/v1/messages", json={"content": ""}, headers=as_visitor(r.json()["data"]["visitor_token"])
    )
    assert invalid.status_code == 422 and invalid.headers["access-control-allow-origin"] == SITE
    # Disabling the widget stops its origin's preflights.
    agent_id = (
        r.json()["data"]["agent"]["name"] and client.get("/v1/agents", headers=admin).json()["data"]["items"][0]["id"]
    )
    client.patch(f"/v1/agents/{agent_id}", json={"widget": {"enabled": False}}, headers=admin)
    assert client.options("/widget/v1/messages", headers={"Origin": SITE, **pre}).status_code == 403
    assert start(client, key).status_code == 403


def test_a_new_visitor_gets_a_web_session_with_the_welcome_and_a_reload_continues_it(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    first = start(client, key).json()["data"]
    assert first["created"] is True and first["agent"]["title"] == "Shop"
    assert [m["text"] for m in first["messages"]] == ["Hello from the shop!"]
    session = client.get(f"/v1/chat/session/{first['session_id']}", headers=operator).json()["data"]
    assert session["channel"] == "web" and session["customer_id"].startswith("visitor_")
    sent = client.post(
        "/widget/v1/messages", json={"content": "Where is my order?"}, headers=as_visitor(first["visitor_token"])
    )
    assert sent.status_code == 200 and sent.json()["data"]["role"] == "customer"
    again = start(client, key, visitor_token=first["visitor_token"]).json()["data"]
    assert again["session_id"] == first["session_id"] and again["created"] is False
    assert [m["text"] for m in again["messages"]] == ["Hello from the shop!", "Where is my order?"]
    assert start(client, key).json()["data"]["session_id"] != first["session_id"], "no token: a new visitor"


def test_a_visitor_token_opens_its_own_session_only(client: TestClient, admin: dict[str, str]) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    other_key = make_agent(client, admin)["widget"]["public_key"]
    mine = start(client, key).json()["data"]
    theirs = start(client, key).json()["data"]
    client.post("/widget/v1/messages", json={"content": "their secret"}, headers=as_visitor(theirs["visitor_token"]))
    items = client.get("/widget/v1/messages", headers=as_visitor(mine["visitor_token"])).json()["data"]["items"]
    assert "their secret" not in str(items)
    head, _, mac = mine["visitor_token"].split(".")
    forged = f"{head}.{theirs['visitor_token'].split('.')[1]}.{mac}"
    assert client.get("/widget/v1/messages", headers=as_visitor(forged)).status_code == 401
    assert client.get("/widget/v1/messages", headers={"Origin": SITE}).status_code == 401
    # A token of another agent's widget does not continue anything through this key.
    other = start(client, other_key).json()["data"]
    assert start(client, key, visitor_token=other["visitor_token"]).status_code == 401
    events = client.get("/widget/v1/events?visitor_token=nope", headers={"Origin": SITE})
    assert events.status_code == 401


def test_identity_verification_continues_a_user_on_any_device_and_refuses_a_bad_hash(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    key = make_agent(client, admin, identity_secret=SECRET)["widget"]["public_key"]
    user = {"id": "user-42", "hash": identity_hash(SECRET, "user-42")}
    laptop = start(client, key, user=user).json()["data"]
    phone = start(client, key, user=user).json()["data"]
    assert phone["session_id"] == laptop["session_id"]
    session = client.get(f"/v1/chat/session/{laptop['session_id']}", headers=operator).json()["data"]
    assert session["customer_id"] == "user-42"
    before = stored_sessions(client, admin)
    bad = start(client, key, user={"id": "user-43", "hash": user["hash"]})
    assert bad.status_code == 403 and "user.hash" in bad.json()["errors"][0]
    assert stored_sessions(client, admin) == before
    no_secret = make_agent(client, admin)["widget"]["public_key"]
    assert start(client, no_secret, user=user).status_code == 403


def test_the_lead_form_is_validated_field_by_field_and_lands_in_input_fields(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    key = make_agent(client, admin, lead_form=LEAD)["widget"]["public_key"]
    config = client.get(f"/widget/v1/config?key={key}", headers={"Origin": SITE}).json()["data"]["agent"]
    assert [f["name"] for f in config["lead_form"]["fields"]] == ["name", "email", "phone"]
    bad = start(client, key, lead={"email": "not-an-email", "phone": "12345", "age": "9"})
    assert bad.status_code == 422
    errors = " | ".join(bad.json()["errors"])
    for field in ("lead.name", "lead.email", "lead.phone", "lead.age"):
        assert field in errors
    assert stored_sessions(client, admin) == 0
    good = start(client, key, lead={"name": "Ada", "email": "Ada@Example.com", "phone": "+1 (555) 010-2030"})
    assert good.status_code == 200, good.text
    session = client.get(f"/v1/chat/session/{good.json()['data']['session_id']}", headers=operator).json()["data"]
    assert session["metadata"]["input_fields"] == {"name": "Ada", "email": "ada@example.com", "phone": "+15550102030"}


def test_only_public_roles_leave_through_the_widget(
    client: TestClient, admin: dict[str, str], operator: dict[str, str], ctx: Any
) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    visitor = start(client, key).json()["data"]
    sid, headers = visitor["session_id"], as_visitor(visitor["visitor_token"])
    client.post("/widget/v1/messages", json={"content": "hello"}, headers=headers)
    drain(ctx)
    support = f"/v1/chat/session/{sid}/support"
    client.post(support, json={"command": "whisper", "message": "WHISPER-SECRET"}, headers=operator)
    client.post(f"/v1/chat/session/{sid}/inject_context", json={"context": "CONTEXT-SECRET"}, headers=operator)
    client.post(support, json={"command": "takeover", "message": "Alice here"}, headers=operator)
    drain(ctx)
    items = client.get("/widget/v1/messages", headers=headers).json()["data"]["items"]
    assert {m["role"] for m in items} == {"customer", "agent", "operator"}
    text = str(items)
    for secret in ("WHISPER-SECRET", "CONTEXT-SECRET", "alice@example.com", "tool_call", "meta", "delivery"):
        assert secret not in text
    assert set(items[-1]) == {"id", "seq", "role", "text", "created_at", "media"}
    again = start(client, key, visitor_token=visitor["visitor_token"]).json()["data"]["messages"]
    assert "WHISPER-SECRET" not in str(again) and again[-1]["text"] == "Alice here"


def test_message_rates_and_new_sessions_per_ip_are_capped_with_429(client: TestClient, admin: dict[str, str]) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    headers = as_visitor(start(client, key).json()["data"]["visitor_token"])
    codes = [
        client.post("/widget/v1/messages", json={"content": f"m{i}"}, headers=headers).status_code for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/widget/v1/messages", json={"content": "again"}, headers=headers)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.headers["access-control-allow-origin"] == SITE
    started = [start(client, key).status_code for _ in range(4)]
    assert started == [200, 200, 200, 429], "the first start counted too"
    metrics = client.get("/metrics").text
    assert 'chatgw_rate_limited_total{limit="widget_visitor"} 2.0' in metrics
    assert 'chatgw_rate_limited_total{limit="widget_sessions_ip"} 1.0' in metrics


def test_a_message_over_the_size_cap_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    headers = as_visitor(start(client, key).json()["data"]["visitor_token"])
    long = client.post("/widget/v1/messages", json={"content": "x" * 51}, headers=headers)
    assert long.status_code == 422 and "content" in long.json()["errors"][0]
    huge = client.post("/widget/v1/messages", json={"content": "x" * 70_000}, headers=headers)
    assert huge.status_code == 413
    assert client.get("/widget/v1/messages", headers=headers).json()["data"]["items"][-1]["role"] == "agent"


def test_a_retried_send_with_the_same_client_id_is_stored_once(client: TestClient, admin: dict[str, str]) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    headers = as_visitor(start(client, key).json()["data"]["visitor_token"])
    body = {"content": "once", "client_id": "abc123"}
    first = client.post("/widget/v1/messages", json=body, headers=headers).json()["data"]
    second = client.post("/widget/v1/messages", json=body, headers=headers).json()["data"]
    assert first["seq"] == second["seq"]
    items = client.get("/widget/v1/messages", headers=headers).json()["data"]["items"]
    assert [m["text"] for m in items].count("once") == 1


def test_a_message_after_the_conversation_closed_opens_the_next_one(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    key = make_agent(client, admin, lead_form={"fields": [{"name": "name", "label": "Name", "required": True}]})
    visitor = start(client, key["widget"]["public_key"], lead={"name": "Ada"}).json()["data"]
    client.post(f"/v1/chat/session/{visitor['session_id']}/support", json={"command": "close"}, headers=operator)
    sent = client.post(
        "/widget/v1/messages", json={"content": "back again"}, headers=as_visitor(visitor["visitor_token"])
    )
    data = sent.json()["data"]
    assert data["session_id"] != visitor["session_id"] and data["visitor_token"]
    session = client.get(f"/v1/chat/session/{data['session_id']}", headers=operator).json()["data"]
    assert session["metadata"]["input_fields"] == {"name": "Ada"} and session["channel"] == "web"
    items = client.get("/widget/v1/messages", headers=as_visitor(data["visitor_token"])).json()["data"]["items"]
    assert [m["text"] for m in items] == ["back again"]


def test_a_call_request_validates_the_number_and_places_one_call(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    key = make_agent(client, admin)["widget"]["public_key"]
    headers = as_visitor(start(client, key).json()["data"]["visitor_token"])
    bad = client.post("/widget/v1/call", json={"phone_number": "call me"}, headers=headers)
    assert bad.status_code == 422 and "E.164" in bad.json()["errors"][0]
    off = client.post("/widget/v1/call", json={"phone_number": "+15550102030"}, headers=headers)
    assert off.status_code == 422 and off.json()["errors"][0].startswith("escalation:")

    agent = make_agent(client, admin)
    r = client.patch(
        f"/v1/agents/{agent['id']}",
        json={"escalation": {"enabled": True, "from_number": "+15550001111"}},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    visitor = start(client, agent["widget"]["public_key"]).json()["data"]
    headers = as_visitor(visitor["visitor_token"])
    assert (
        client.post("/widget/v1/call", json={"phone_number": "+15550102030"}, headers={"Origin": SITE}).status_code
        == 401
    )
    placed = client.post("/widget/v1/call", json={"phone_number": "+1 555 010 2030"}, headers=headers)
    assert placed.status_code == 202, placed.text
    assert placed.json()["data"]["phone_number"] == "+15550102030" and set(placed.json()["data"]) == {
        "call_id",
        "status",
        "phone_number",
    }
    again = client.post("/widget/v1/call", json={"phone_number": "+15550102030"}, headers=headers)
    assert again.status_code == 422 and "already live" in again.json()["errors"][0]
    calls = client.get("/v1/calls", params={"session_id": visitor["session_id"]}, headers=operator).json()["data"]
    assert [c["call_id"] for c in calls["items"]] == [placed.json()["data"]["call_id"]]


def test_an_archived_agent_is_shown_offline(client: TestClient, admin: dict[str, str]) -> None:
    agent = make_agent(client, admin)
    client.delete(f"/v1/agents/{agent['id']}", headers=admin)
    config = client.get(f"/widget/v1/config?key={agent['widget']['public_key']}", headers={"Origin": SITE})
    assert config.status_code == 200 and config.json()["data"]["agent"]["online"] is False
    assert start(client, agent["widget"]["public_key"]).status_code == 422


def test_the_api_answers_429_with_retry_after_per_token(
    settings: Settings, redis_url: str, ctx: Any, admin: dict[str, str], api: dict[str, str]
) -> None:
    app_settings = settings.app.model_copy(update={"api_rate_per_s": 1.0, "api_rate_burst": 2})
    with TestClient(create_app(settings.model_copy(update={"app": app_settings}), redis_url)) as client:
        codes = [client.get("/v1/active_agents", headers=api).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.get("/v1/active_agents", headers=api)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
        assert client.get("/v1/active_agents", headers=admin).status_code == 200, "each token has its own limit"
        assert 'chatgw_rate_limited_total{limit="api_token"} 2.0' in client.get("/metrics").text


def test_the_widget_script_is_one_small_static_file(client: TestClient) -> None:
    r = client.get("/widget.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
    assert len(r.content) < 40 * 1024
    source = r.text
    for banned in ("eval(", "new Function", "innerHTML", "onclick=", "document.write"):
        assert banned not in source
    assert client.get("/widget.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304


live = test_sse.live


def test_the_stream_shows_typing_then_the_reply_and_resumes_after_last_event_id(
    live: str, admin: dict[str, str], operator: dict[str, str], workers: Any
) -> None:
    agent = httpx.post(
        live + "/v1/agents", json={"name": "A", "widget": {"enabled": True, "allowed_origins": [SITE]}}, headers=admin
    ).json()["data"]
    visitor = httpx.post(
        live + "/widget/v1/sessions", json={"key": agent["widget"]["public_key"]}, headers={"Origin": SITE}
    ).json()["data"]
    token = visitor["visitor_token"]
    got: list[tuple[str, dict[str, Any]]] = []
    connected = threading.Event()
    url = f"{live}/widget/v1/events?visitor_token={token}"
    reader = threading.Thread(target=read_events, args=(url, {"Origin": SITE}, 4, got, connected), daemon=True)
    reader.start()
    assert connected.wait(10)
    sent = httpx.post(live + "/widget/v1/messages", json={"content": "hello"}, headers=as_visitor(token)).json()["data"]
    httpx.post(
        f"{live}/v1/chat/session/{visitor['session_id']}/support",
        json={"command": "whisper", "message": "psst"},
        headers=operator,
    )
    reader.join(20)
    kinds = [(kind, data.get("role", data.get("typing"))) for kind, data in got]
    assert ("message", "customer") in kinds and ("message", "agent") in kinds
    assert ("typing", True) in kinds
    assert kinds.index(("typing", True)) < kinds.index(("message", "agent"))
    assert "psst" not in str(got)
    # A reconnect after the customer message replays exactly what followed it.
    replay: list[tuple[str, dict[str, Any]]] = []
    headers = {"Origin": SITE, "Last-Event-ID": str(sent["seq"])}
    read_events(url, headers, 1, replay)
    assert replay[0][0] == "message" and replay[0][1]["role"] == "agent"
    assert replay[0][1]["seq"] > sent["seq"]


def test_an_agents_file_enables_the_widget_and_keeps_its_key_on_every_apply(store: Any, tmp_path: Any) -> None:
    from gateway.cli.agent_files import apply_file

    path = tmp_path / "agents.yaml"
    path.write_text(
        f"agents:\n  - id: agent_site\n    name: Site\n    widget: {{enabled: true, allowed_origins: [{SITE}]}}\n"
    )
    [(action, first)] = apply_file(store, path)
    assert action == "created" and first.widget.public_key
    [(action, again)] = apply_file(store, path)
    assert action == "unchanged" and again.widget.public_key == first.widget.public_key


def test_the_demo_page_embeds_the_widget_of_the_demo_agent(client: TestClient, store: Any) -> None:
    from gateway.cli.demo import demo_origins, ensure_demo

    assert client.get("/widget/demo").status_code == 404
    origins = demo_origins("http://127.0.0.1:8000")
    assert origins == ["http://127.0.0.1:8000", "http://localhost:8000"]
    ensure_demo(store, origins)
    page = client.get("/widget/demo")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    key = client.get("/v1/agents/agent_demo", headers=admin_headers(store)).json()["data"]["widget"]["public_key"]
    assert f'src="/widget.js" data-key="{key}"' in page.text
    config = client.get(f"/widget/v1/config?key={key}", headers={"Origin": "http://localhost:8000"})
    assert config.status_code == 200 and config.json()["data"]["agent"]["lead_form"]["fields"]


def admin_headers(store: Any) -> dict[str, str]:
    from agent_core.store import tokens
    from agent_core.store.tokens import TokenRole

    token, _ = store.run(tokens.create("demo-admin", TokenRole.admin))
    return {"API-Token": token}
