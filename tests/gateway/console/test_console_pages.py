"""Console pages and actions against the real app and Redis: the same listing, stats and
support-command functions as the API, escaping, CSRF on every action, refusals with reasons."""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.testclient import TestClient

from agent_core.store import Change, Store, sessions
from tests.conftest import drain
from tests.gateway.console.conftest import inbound, make_agent, sign_in


def api_session(client: TestClient, h: dict[str, str], sid: str) -> dict[str, Any]:
    return client.get(f"/v1/chat/session/{sid}", headers=h).json()["data"]  # type: ignore[no-any-return]


def api_thread(client: TestClient, h: dict[str, str], sid: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/chat/session/{sid}/messages?include_private=1&limit=200", headers=h)
    return r.json()["data"]["items"]  # type: ignore[no-any-return]


def act(client: TestClient, csrf: str, sid: str, command: str, message: str | None = None) -> Any:
    data = {"command": command, **({"message": message} if message is not None else {})}
    return client.post(
        f"/console/sessions/{sid}/command", data=data, headers={"X-CSRF-Token": csrf, "Accept": "application/json"}
    )


def test_sessions_page_shows_stat_cards_rows_and_badges(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], ctx: Any
) -> None:
    agent = make_agent(web, admin)
    inbound(web, api, agent["id"], "hello there", customer="cust-a")
    inbound(web, api, agent["id"], "I want a human", customer="cust-b")
    drain(ctx)
    sign_in(web, tokens_by_role["operator"])
    page = web.get("/console").text
    stats = web.get("/v1/chat/stats", headers=admin).json()["data"]
    assert f'data-stat="total">{stats["total"]}<' in page
    assert f'data-stat="help_requested">{stats["help_requested"]}<' in page and stats["help_requested"] == 1
    assert "cust-a" in page and "cust-b" in page and "Acme" in page
    assert page.count("badge-help") == 1


def test_a_script_message_from_a_customer_renders_as_text(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    agent = make_agent(web, admin)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    sid = inbound(web, api, agent["id"], evil, customer='<b id="c">bold</b>')
    sign_in(web, tokens_by_role["operator"])
    for path in ("/console", f"/console/sessions/{sid}"):
        page = web.get(path).text
        assert evil not in page and "<script>alert" not in page and "<img src=x" not in page
        assert html.escape(evil, quote=False).replace('"', "&#34;") in page or "&lt;script&gt;" in page
        assert '<b id="c">' not in page


def test_session_page_shows_the_whole_thread_with_private_entries_marked(
    web: TestClient,
    admin: dict[str, str],
    api: dict[str, str],
    operator: dict[str, str],
    tokens_by_role: dict[str, str],
) -> None:
    agent = make_agent(web, admin)
    sid = inbound(web, api, agent["id"], "hello")
    web.post(f"/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "be nice"}, headers=operator)
    web.post(f"/v1/chat/session/{sid}/inject_context", json={"context": "VIP customer"}, headers=operator)
    sign_in(web, tokens_by_role["operator"])
    page = web.get(f"/console/sessions/{sid}").text
    assert "hello" in page
    whisper = re.search(r'<li class="msg role-whisper private[^"]*"[^>]*>.*?</li>', page, re.S)
    assert whisper and "be nice" in whisper.group(0) and "Whisper (private)" in whisper.group(0)
    assert re.search(r"role-context private.*?VIP customer", page, re.S)
    assert "VIP customer" in page.split('id="panel"')[1]  # the context bucket in the metadata


def test_actions_run_the_support_commands_and_refuse_with_the_reason(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], ctx: Any
) -> None:
    agent = make_agent(web, admin)
    sid = inbound(web, api, agent["id"], "I want a human")
    drain(ctx)
    csrf = sign_in(web, tokens_by_role["operator"])
    r = act(web, csrf, sid, "message", "hi")
    assert r.status_code == 422 and "support mode" in r.json()["errors"][0]
    assert act(web, csrf, sid, "whisper", "they are upset").json()["data"]["command"] == "whisper"
    assert (
        act(web, csrf, sid, "tell", "A person will be with you").json()["data"]["reply"] == "A person will be with you"
    )
    r = act(web, csrf, sid, "takeover")
    assert r.json()["data"]["active_human"] == "alice@example.com"
    s = api_session(web, admin, sid)
    assert (s["mode"], s["active_human"], s["help_requested"]) == ("support", "alice@example.com", False)
    assert act(web, csrf, sid, "message", "Alice here").status_code == 200
    assert act(web, csrf, sid, "end").status_code == 200
    assert api_session(web, admin, sid)["mode"] == "ai"
    r = act(web, csrf, sid, "resolve")
    assert r.status_code == 200
    assert act(web, csrf, sid, "close").status_code == 200
    assert api_session(web, admin, sid)["status"] == "closed"
    r = act(web, csrf, sid, "whisper", "late")
    assert r.status_code == 422 and "closed" in r.json()["errors"][0]
    thread = api_thread(web, admin, sid)
    ops = [(m["role"], m["text"], m.get("author")) for m in thread if m["role"] in ("operator", "whisper")]
    assert ops == [
        ("whisper", "they are upset", "alice@example.com"),
        ("operator", "A person will be with you", "alice@example.com"),
        ("operator", "Alice here", "alice@example.com"),
    ]
    page = web.get(f"/console/sessions/{sid}").text
    assert "the session is closed" in page and 'id="composer"' not in page


def test_a_form_post_without_script_redirects_back_with_the_error(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    agent = make_agent(web, admin)
    sid = inbound(web, api, agent["id"], "hello")
    csrf = sign_in(web, tokens_by_role["operator"])
    r = web.post(
        f"/console/sessions/{sid}/command",
        data={"command": "message", "message": "x", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "error=" in r.headers["location"]
    assert "support mode" in web.get(r.headers["location"]).text
    r = web.post(f"/console/sessions/{sid}/command", data={"command": "takeover", "csrf_token": csrf})
    assert r.status_code == 200 and api_session(web, admin, sid)["mode"] == "support"


def test_a_forged_cross_site_post_changes_nothing(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    agent = make_agent(web, admin)
    sid = inbound(web, api, agent["id"], "hello")
    csrf = sign_in(web, tokens_by_role["operator"])
    before = api_thread(web, admin, sid)
    for data, headers in (
        ({"command": "takeover"}, {}),
        ({"command": "takeover", "csrf_token": "guess"}, {}),
        ({"command": "takeover", "csrf_token": csrf}, {"Origin": "https://evil.example"}),
    ):
        r = web.post(f"/console/sessions/{sid}/command", data=data, headers=headers)
        assert r.status_code == 403 and "csrf_token" in r.json()["errors"][0]
    assert api_session(web, admin, sid)["mode"] == "ai"
    assert api_thread(web, admin, sid) == before


def test_disabled_commands_are_hidden_with_the_reason(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    agent = make_agent(web, admin, support_commands={"whisper": False, "tell": True, "takeover": True})
    sid = inbound(web, api, agent["id"], "hello")
    csrf = sign_in(web, tokens_by_role["operator"])
    page = web.get(f"/console/sessions/{sid}").text
    assert "&#39;whisper&#39; is disabled for this agent" in page
    assert 'value="whisper"' not in page
    r = act(web, csrf, sid, "whisper", "x")
    assert r.status_code == 422 and "disabled" in r.json()["errors"][0]


def test_opted_out_customers_get_nothing_from_the_console(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], store: Store
) -> None:
    agent = make_agent(web, admin)
    sid = inbound(web, api, agent["id"], "hello")
    store.run(sessions.commit(sid, Change(set={"opted_out": True})))
    csrf = sign_in(web, tokens_by_role["operator"])
    page = web.get(f"/console/sessions/{sid}").text
    assert "Opted out" in page and "opted out (STOP)" in page
    r = act(web, csrf, sid, "tell", "buy now")
    assert r.status_code == 422 and "opted out" in r.json()["errors"][0]


def test_call_button_places_one_call_through_request_call(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    plain = make_agent(web, admin)
    sid = inbound(web, api, plain["id"], "hello")
    csrf = sign_in(web, tokens_by_role["operator"])
    assert "phone calls are disabled for this agent" in web.get(f"/console/sessions/{sid}").text
    r = web.post(f"/console/sessions/{sid}/call", data={"to": "+15551230000"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["errors"][0].startswith("escalation:")

    agent = make_agent(web, admin, escalation={"enabled": True, "from_number": "+15550001111"})
    sid = inbound(web, api, agent["id"], "hello", customer="c2")
    page = web.get(f"/console/sessions/{sid}").text
    assert f'action="/console/sessions/{sid}/call"' in page and 'name="to"' in page
    assert web.post(f"/console/sessions/{sid}/call", data={"to": "+15551230000"}).status_code == 403
    bad = web.post(f"/console/sessions/{sid}/call", data={"to": "555"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422 and bad.json()["errors"][0].startswith("to:")
    placed = web.post(f"/console/sessions/{sid}/call", data={"to": "+15551230000"}, headers={"X-CSRF-Token": csrf})
    assert placed.status_code == 202 and placed.json()["data"]["to"] == "+15551230000"
    again = web.post(f"/console/sessions/{sid}/call", data={"to": "+15551230000"}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 422 and "already live" in again.json()["errors"][0]
    page = web.get(f"/console/sessions/{sid}").text
    assert "Live call" in page and "Call to +15551230000" in page and "a call is in progress" in page
    r = web.get("/v1/calls", params={"session_id": sid}, headers=admin)
    assert r.status_code == 200, r.text
    listed = r.json()["data"]["items"]
    assert [c["call_id"] for c in listed] == [placed.json()["data"]["call_id"]]


def test_filters_are_shareable_links_over_the_indexed_listing(
    web: TestClient,
    admin: dict[str, str],
    api: dict[str, str],
    operator: dict[str, str],
    tokens_by_role: dict[str, str],
) -> None:
    agent = make_agent(web, admin)
    a = inbound(web, api, agent["id"], "one", customer="alpha")
    inbound(web, api, agent["id"], "two", customer="beta")
    web.post(f"/v1/chat/session/{a}/support", json={"command": "close"}, headers=operator)
    sign_in(web, tokens_by_role["operator"])
    closed = web.get("/console?status=closed").text
    assert "alpha" in closed and "beta" not in closed
    assert "beta" in web.get("/console?q=bet").text and "alpha" not in web.get("/console?q=bet").text
    assert "beta" in web.get(f"/console?agent={agent['id']}&channel=api&mode=ai").text
    r = web.get("/console?status=asleep")
    assert r.status_code == 422 and "status: must be one of active, dormant, closed" in r.text


def test_the_inbox_lists_help_requests_oldest_first(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], ctx: Any
) -> None:
    agent = make_agent(web, admin)
    for customer in ("first", "second", "third"):
        inbound(web, api, agent["id"], "I want a human", customer=customer)
        drain(ctx)
    inbound(web, api, agent["id"], "just browsing", customer="nohelp")
    inbound(web, api, agent["id"], "still there?", customer="first")  # newest activity, oldest request
    drain(ctx)
    sign_in(web, tokens_by_role["operator"])
    page = web.get("/console?view=inbox").text
    order = [c for c in re.findall(r'<span class="cust">([^<]+)</span>', page)]
    assert order == ["first", "second", "third"]
    assert 'class="waited" data-since=' in page


def test_knowledge_upload_needs_an_admin_and_attaches_to_the_agent(
    web: TestClient, admin: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    agent = make_agent(web, admin)
    files = {"file": ("faq.md", b"# Returns\n\nReturns are accepted within 30 days.", "text/markdown")}
    csrf = sign_in(web, tokens_by_role["operator"])
    r = web.post("/console/knowledge/documents", files=files, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "admin" in r.json()["errors"][0]
    web.cookies.clear()
    csrf = sign_in(web, tokens_by_role["admin"])
    assert web.post("/console/knowledge/documents", files=files).status_code == 403
    r = web.post(f"/console/knowledge/documents?agent={agent['id']}", files=files, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    doc = r.json()["data"]
    assert doc["status"] == "ready" and doc["chunks"] >= 1
    assert web.get(f"/console/knowledge/documents/{doc['id']}").json()["data"]["id"] == doc["id"]
    assert web.get(f"/v1/agents/{agent['id']}", headers=admin).json()["data"]["knowledge"]["document_ids"] == [
        doc["id"]
    ]
    page = web.get("/console/knowledge").text
    assert "faq.md" in page and "Acme" in page
    r = web.post(f"/console/knowledge/documents/{doc['id']}/archive", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert web.get(f"/v1/knowledge/documents/{doc['id']}", headers=admin).json()["data"]["archived"] is True


def test_the_dev_outbox_shows_what_would_have_been_sent(
    web: TestClient, admin: dict[str, str], tokens_by_role: dict[str, str], ctx: Any
) -> None:
    number = "+15550001111"
    agent = make_agent(web, admin, channels={"numbers": [number]})
    from tests.twilio_helpers import post_webhook

    params = {
        "From": "+15557654321",
        "To": number,
        "Body": "hi <there>",
        "MessageSid": "SM" + "a" * 32,
        "AccountSid": "AC" + "b" * 32,
        "NumMedia": "0",
    }
    token = web.app.state.twilio_auth_token  # type: ignore[attr-defined]
    assert post_webhook(web, "/twilio/messages", params, token=token).status_code == 200
    drain(ctx)
    sign_in(web, tokens_by_role["operator"])
    assert 'href="/console/outbox"' in web.get("/console").text
    page = web.get("/console/outbox").text
    assert "not sent" in page and "+15557654321" in page
    assert agent["id"]


def test_static_files_are_served_with_cache_headers(web: TestClient) -> None:
    for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        r = web.get(f"/console/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "max-age=" in r.headers["cache-control"]
    assert web.get("/console/static/../pages.py").status_code == 404


def test_the_sessions_page_reads_the_indexed_listing_and_counters_not_scans(
    web: TestClient, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], redis_url: str
) -> None:
    import redis

    agent = make_agent(web, admin)
    for i in range(60):
        inbound(web, api, agent["id"], f"hello {i}", customer=f"cust-{i}")
    sign_in(web, tokens_by_role["operator"])
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def calls() -> dict[str, int]:
        return {k: v["calls"] for k, v in r.info("commandstats").items()}

    before = calls()
    assert web.get("/console?channel=api").status_code == 200
    after = calls()
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert not {"cmdstat_scan", "cmdstat_keys", "cmdstat_hscan", "cmdstat_zscan"} & set(used), used
    # Per page, not per stored session: the login and agents, one listing script (reading the
    # 50 rows it returns), one pipelined preview read per row, the stat counters.
    assert used.get("cmdstat_evalsha") == 1 and sum(used.values()) <= 4 * 50 + 15, used


def test_past_the_whatsapp_window_only_a_template_can_be_sent(
    web: TestClient, admin: dict[str, str], tokens_by_role: dict[str, str], store: Store, ctx: Any
) -> None:
    from tests.channels.twilio.wire import whatsapp_form
    from tests.twilio_helpers import post_webhook

    number = "+15550001111"
    make_agent(web, admin, channels={"numbers": [f"whatsapp:{number}"]})
    token = web.app.state.twilio_auth_token  # type: ignore[attr-defined]
    assert post_webhook(web, "/twilio/messages", whatsapp_form(To=f"whatsapp:{number}"), token=token).status_code == 200
    drain(ctx)
    (sid,) = [s["id"] for s in web.get("/v1/chat/sessions", headers=admin).json()["data"]["items"]]
    old = "2026-01-01T00:00:00.000Z"
    store.run(sessions.commit(sid, Change(set={"last_customer_message_at": old, "last_customer_at:whatsapp": old})))
    csrf = sign_in(web, tokens_by_role["operator"])
    page = web.get(f"/console/sessions/{sid}").text
    assert "Outside WhatsApp window" in page and "send an approved template" in page
    assert act(web, csrf, sid, "tell", "hello?").status_code == 422
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
    r = web.post(f"/console/sessions/{sid}/template", data={"content_sid": "HXnope"}, headers=headers)
    assert r.status_code == 422 and "content_sid" in r.json()["errors"][0]
    r = web.post(f"/console/sessions/{sid}/template", data={"content_sid": "HX" + "a" * 32}, headers=headers)
    assert r.status_code == 200, r.text
    sent = [m for m in api_thread(web, admin, sid) if m["role"] == "operator"]
    assert sent[-1]["text"] == "[template HX" + "a" * 32 + "]" and sent[-1]["author"] == "alice@example.com"
