"""The console's live streams on a real server (uvicorn): rows and cards update as customers
write, the session stream carries rendered thread entries, and a reconnect misses nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent_core.settings import Settings
from gateway.app import create_app
from gateway.console.auth import COOKIE
from tests.fakes import free_port
from tests.gateway.console.conftest import CSRF_FIELD, CSRF_META
from tests.helpers import eventually, serving


@pytest.fixture
def live(settings: Settings, redis_url: str, ctx: Any) -> Iterator[str]:
    port = free_port()
    # Served over plain http here, so the cookie is not Secure and a client sends it back.
    plain = settings.model_copy(
        update={"app": settings.app.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})}
    )
    with serving(create_app(plain, redis_url), port) as url:
        yield url


def console_login(base: str, token: str) -> tuple[dict[str, str], str]:
    """(cookie header, csrf) for a signed-in console."""
    with httpx.Client(base_url=base) as c:
        form = c.get("/console/login")
        csrf = CSRF_FIELD.search(form.text).group(1)  # type: ignore[union-attr]
        r = c.post("/console/login", data={"token": token, "csrf_token": csrf}, follow_redirects=True)
        assert r.status_code == 200, r.text
        cookie = {"Cookie": f"{COOKIE}={c.cookies[COOKIE]}"}
        return cookie, CSRF_META.search(r.text).group(1)  # type: ignore[union-attr]


def new_session(base: str, admin: dict[str, str], api: dict[str, str]) -> str:
    agent = httpx.post(base + "/v1/agents", json={"name": "Acme"}, headers=admin).json()["data"]
    r = httpx.post(base + "/v1/chat/session", json={"agent_uuid": agent["id"], "customer_id": "c1"}, headers=api)
    return r.json()["data"]["id"]  # type: ignore[no-any-return]


def read(
    url: str, headers: dict[str, str], stop: Any, out: list[tuple[str, dict[str, Any]]], opened: threading.Event
) -> None:
    with httpx.stream("GET", url, headers=headers, timeout=20) as r:
        event = None
        for line in r.iter_lines():
            if line.startswith("retry: "):
                opened.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                out.append((event, json.loads(line[6:])))
                if stop(out):
                    return


def start_reader(url: str, headers: dict[str, str], stop: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[tuple[str, dict[str, Any]]] = []
    opened = threading.Event()
    t = threading.Thread(target=read, args=(url, headers, stop, out, opened), daemon=True)
    t.start()
    assert opened.wait(10), "the stream did not open"
    return t, out


def test_list_stream_brings_new_sessions_help_requests_and_cards(
    live: str, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], workers: Any
) -> None:
    agent = httpx.post(live + "/v1/agents", json={"name": "Acme", "debounce_ms": 0}, headers=admin).json()["data"]
    cookie, _ = console_login(live, tokens_by_role["operator"])

    def help_row(out: list[Any]) -> bool:
        return any(k == "stats" and d["help"] for k, d in out)

    reader, got = start_reader(f"{live}/console/events?view=all", cookie, help_row)
    httpx.post(
        live + "/v1/chat/inbound?wait=0",
        json={"agent_uuid": agent["id"], "customer_id": "walk-in", "content": "I want a human <now>"},
        headers=api,
    )
    reader.join(15)
    rows = [d for k, d in got if k == "row"]
    assert rows and 'class="cust">walk-in<' in rows[-1]["html"]
    assert "&lt;now&gt;" in rows[-1]["html"] or "Help requested" in rows[-1]["html"]
    stats = [d for k, d in got if k == "stats"]
    assert stats[0]["help"] == 0 and stats[-1]["help"] == 1


def test_list_stream_only_sends_rows_the_filter_shows(
    live: str, admin: dict[str, str], api: dict[str, str], operator: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    sid = new_session(live, admin, api)
    cookie, _ = console_login(live, tokens_by_role["operator"])
    reader, got = start_reader(
        f"{live}/console/events?mode=support", cookie, lambda out: any(k == "remove" for k, _ in out)
    )
    httpx.post(f"{live}/v1/chat/session/{sid}/support", json={"command": "takeover"}, headers=operator)
    eventually(lambda: any(k == "row" for k, _ in got))
    httpx.post(f"{live}/v1/chat/session/{sid}/support", json={"command": "end"}, headers=operator)
    reader.join(15)
    kinds = [(k, d.get("id")) for k, d in got if k in ("row", "remove")]
    assert ("row", sid) in kinds and kinds[-1] == ("remove", sid)


def test_session_stream_renders_entries_and_replays_after_last_event_id(
    live: str, admin: dict[str, str], api: dict[str, str], operator: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    sid = new_session(live, admin, api)
    cookie, _ = console_login(live, tokens_by_role["operator"])
    url = f"{live}/console/sessions/{sid}/events"

    def whisper_seen(out: list[Any]) -> bool:
        return any(k == "message" and "psst" in d["html"] for k, d in out)

    reader, got = start_reader(url, cookie, whisper_seen)
    httpx.post(
        f"{live}/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "psst"}, headers=operator
    )
    reader.join(15)
    html = next(d["html"] for k, d in got if k == "message" and "psst" in d["html"])
    assert "role-whisper private" in html
    last = max(d["seq"] for k, d in got if k == "message")
    # The connection drops; meanwhile two more entries are written; the reconnect catches up.
    httpx.post(f"{live}/v1/chat/session/{sid}/support", json={"command": "tell", "message": "one"}, headers=operator)
    httpx.post(f"{live}/v1/chat/session/{sid}/support", json={"command": "takeover"}, headers=operator)
    reader, again = start_reader(
        url,
        {**cookie, "Last-Event-ID": str(last)},
        lambda out: sum(1 for k, _ in out if k == "message") >= 3 and any(k == "panel" for k, _ in out),
    )
    reader.join(15)
    seqs = [d["seq"] for k, d in again if k == "message"]
    assert seqs == list(range(last + 1, last + 4))  # tell's record and text, takeover's record: none missed
    assert any(">one<" in d["html"] for k, d in again if k == "message")
    panel = [d for k, d in again if k == "panel"][-1]
    assert "Handled by <b>alice@example.com</b> (you)" in panel["html"] and "Hand back to AI" in panel["html"]


def test_streams_refuse_without_a_session(live: str) -> None:
    assert httpx.get(f"{live}/console/events").status_code == 401


def test_an_open_stream_ends_at_logout_and_shows_nothing_after(
    live: str, admin: dict[str, str], api: dict[str, str], operator: dict[str, str], tokens_by_role: dict[str, str]
) -> None:
    sid = new_session(live, admin, api)
    cookie, csrf = console_login(live, tokens_by_role["operator"])
    reader, got = start_reader(
        f"{live}/console/sessions/{sid}/events", cookie, lambda out: any(k in ("expired", "message") for k, _ in out)
    )
    r = httpx.post(f"{live}/console/logout", data={"csrf_token": csrf}, headers=cookie)
    assert r.status_code == 303
    time.sleep(1.2)  # past the stream's re-check interval
    httpx.post(
        f"{live}/v1/chat/session/{sid}/support", json={"command": "whisper", "message": "secret"}, headers=operator
    )
    reader.join(15)
    assert [k for k, _ in got] == ["expired"]


def test_another_operator_sees_who_is_typing(
    live: str, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], store: Any
) -> None:
    from agent_core.store import tokens
    from agent_core.store.tokens import TokenRole

    sid = new_session(live, admin, api)
    bob, _ = store.run(tokens.create("bob@example.com", TokenRole.operator))
    alice_cookie, alice_csrf = console_login(live, tokens_by_role["operator"])
    bob_cookie, _ = console_login(live, bob)
    url = f"{live}/console/sessions/{sid}/events"
    bob_reader, bob_got = start_reader(url, bob_cookie, lambda out: any(k == "typing" for k, _ in out))
    _, alice_got = start_reader(url, alice_cookie, lambda out: any(k == "typing" for k, _ in out))
    r = httpx.post(f"{live}/console/sessions/{sid}/typing", headers={**alice_cookie, "X-CSRF-Token": alice_csrf})
    assert r.status_code == 204
    assert httpx.post(f"{live}/console/sessions/{sid}/typing", headers=alice_cookie).status_code == 403
    bob_reader.join(10)
    assert [d for k, d in bob_got if k == "typing"] == [{"who": "alice@example.com"}]
    assert not any(k == "typing" for k, _ in alice_got)  # not shown to the one typing


def test_outbox_stream_shows_a_call_placed_in_dev_mode_as_it_happens(
    live: str, admin: dict[str, str], api: dict[str, str], tokens_by_role: dict[str, str], workers: Any
) -> None:
    assert httpx.get(live + "/console/outbox/events").status_code == 401
    escalation = {"enabled": True, "from_number": "+15550001111"}
    agent = httpx.post(live + "/v1/agents", json={"name": "Acme", "escalation": escalation}, headers=admin).json()
    sid = httpx.post(
        live + "/v1/chat/session", json={"agent_uuid": agent["data"]["id"], "customer_id": "c1"}, headers=api
    ).json()["data"]["id"]
    cookie, _ = console_login(live, tokens_by_role["operator"])

    def two_lists(out: list[Any]) -> bool:
        return len([1 for k, _ in out if k == "list"]) >= 2

    reader, got = start_reader(live + "/console/outbox/events", cookie, two_lists)
    placed = httpx.post(f"{live}/v1/chat/session/{sid}/call", json={"to": "+15551230000"}, headers=admin)
    assert placed.status_code == 202, placed.text
    reader.join(15)
    lists = [d["html"] for k, d in got if k == "list"]
    assert "Nothing yet" in lists[0]
    call_id = placed.json()["data"]["call_id"]
    assert f"chatgw call {call_id}" in lists[-1] and "to +15551230000" in lists[-1]
