"""The web chat widget in a real browser (SPEC §14): a host page on another origin embeds the
script; a visitor fills the lead form, chats with the agent, gets an operator's takeover live,
never sees a whisper, survives a network drop and a reload; a disallowed site is refused."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from agent_core.store import Store, agents
from agent_core.support import run_command
from agent_core.widget import identity_hash
from gateway.cli.demo import demo_origins, ensure_demo
from tests import procs
from tests.browser.gateway import Gateway
from tests.fakes import free_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Account</title></head><body>
<h1>Your account</h1>
<script src="{gateway}/widget.js" data-key="{key}" data-user-id="{user}" data-user-hash="{hash}" async></script>
</body></html>"""
HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop</title>
<style>button {{ background: red !important; font-size: 40px !important; }} * {{ color: lime; }}</style>
</head><body><h1>Acme Shop</h1><p>Our products.</p>
<script src="{gateway}/widget.js" data-key="{key}" async></script>
</body></html>"""


DROPPED = "Written while the connection was down."


class HostSite:
    """A customer's website: one static page on its own origin that embeds the widget."""

    def __init__(self, host: str, port: int, body: str) -> None:
        self.origin = f"http://{host}:{port}"
        payload = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin(gateway: Gateway) -> dict[str, str]:
    return {"API-Token": gateway.token("admin", "admin@example.com")}


@pytest.fixture
def operator(gateway: Gateway) -> dict[str, str]:
    return {"API-Token": gateway.token("operator", "alice@example.com")}


@pytest.fixture
def shop(gateway: Gateway, admin: dict[str, str]) -> Iterator[tuple[HostSite, str]]:
    # localhost vs the gateway's 127.0.0.1, and another port: a different origin.
    port = free_port()
    origin = f"http://localhost:{port}"
    body = {
        "name": "Shop support",
        "welcome_message": "Hi! I'm the shop's assistant.",
        "escalation": {"enabled": True, "from_number": "+15550001111"},
        "widget": {
            "enabled": True,
            "allowed_origins": [origin],
            "title": "Acme Shop",
            "lead_form": {
                "fields": [
                    {"name": "name", "label": "Your name", "type": "text", "required": True},
                    {"name": "email", "label": "Email", "type": "email", "required": True},
                ]
            },
        },
    }
    agent = httpx.post(f"{gateway.url}/v1/agents", json=body, headers=admin).json()["data"]
    key = agent["widget"]["public_key"]
    site = HostSite("localhost", port, HOST_PAGE.format(gateway=gateway.url, key=key))
    yield site, key
    site.close()


def widget_html(page: Page) -> str:
    return str(page.locator("#chatgw-widget").evaluate("host => host.shadowRoot.innerHTML"))


def web_session(gateway: Gateway, operator: dict[str, str]) -> dict[str, Any]:
    items = httpx.get(f"{gateway.url}/v1/chat/sessions?channel=web", headers=operator).json()["data"]["items"]
    assert len(items) == 1, items
    return items[0]  # type: ignore[no-any-return]


def test_a_visitor_chats_through_the_widget_on_another_site(
    gateway: Gateway,
    shop: tuple[HostSite, str],
    operator: dict[str, str],
    store: Store,
    page: Page,
    artifacts: Path,
) -> None:
    site, _ = shop
    page.goto(site.origin + "/")
    page.get_by_role("button", name="Open chat").click()
    dialog = page.get_by_role("dialog", name="Acme Shop")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_role("button", name="Start chat").click()
    expect(page.get_by_role("alert")).to_contain_text("lead.email")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Start chat").click()
    composer = page.get_by_label("Message", exact=True)
    expect(composer).to_be_visible()
    composer.fill("How long does shipping take? <b>bold</b>")
    composer.press("Enter")
    log = page.get_by_role("log", name="Conversation")
    expect(log.locator(".msg.customer")).to_contain_text("<b>bold</b>")  # text, never HTML
    expect(log.locator(".msg.agent")).to_have_count(2)  # the welcome, then the reply
    page.screenshot(path=str(artifacts / "widget-1280-reply.png"))

    session = web_session(gateway, operator)
    assert session["metadata"]["input_fields"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    support = f"{gateway.url}/v1/chat/session/{session['id']}/support"
    whisper = httpx.post(support, json={"command": "whisper", "message": "SECRET-WHISPER"}, headers=operator)
    assert whisper.status_code == 200
    took = httpx.post(support, json={"command": "takeover", "message": "Hi Ada, Alice here."}, headers=operator)
    assert took.status_code == 200
    expect(log.locator(".msg.operator")).to_contain_text("Hi Ada, Alice here.")
    expect(page.get_by_role("alert")).to_contain_text("A member of our team has joined")
    assert "SECRET-WHISPER" not in widget_html(page) and "SECRET-WHISPER" not in page.content()

    # A dropped connection: what the operator wrote meanwhile arrives once, on reconnect.
    # The web process dies under the open stream; the operator writes meanwhile (through the
    # store, as any web process would); a new web process comes up and the widget reconnects.
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/widget/v1/events" in r.url else None)
    web = gateway.procs[0]
    web.kill()
    web.wait(10)
    agent = store.run(agents.get(session["agent_id"]))
    assert agent is not None
    store.run(
        run_command(session_id=session["id"], agent=agent, operator="alice@example.com", command=None, message=DROPPED)
    )
    gateway.procs[0] = procs.start(procs.procfile()["web"], gateway.environ, gateway.data_dir)
    procs.wait_http(f"{gateway.url}/healthz", proc=gateway.procs[0])
    expect(log.locator(".msg.operator", has_text=DROPPED)).to_have_count(1, timeout=20_000)
    assert streams, "the widget opened its stream again"
    expect(log.locator(".msg.operator")).to_have_count(2)

    page.reload()
    page.get_by_role("button", name="Open chat").click()
    log = page.get_by_role("log", name="Conversation")
    expect(log.locator(".msg.customer")).to_contain_text("How long does shipping take?")
    expect(log.locator(".msg.operator")).to_have_count(2)
    expect(page.get_by_label("Your name")).to_have_count(0)  # no lead form again
    assert web_session(gateway, operator)["id"] == session["id"]
    page.screenshot(path=str(artifacts / "widget-1280-reloaded.png"))

    # Closed panel: Escape returns focus to the launcher, and a new message is counted as unread.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()
    httpx.post(support, json={"message": "Are you still there?"}, headers=operator)
    expect(page.get_by_role("button", name="Open chat (1 unread)")).to_be_visible()
    page.get_by_role("button", name="Open chat (1 unread)").click()
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    expect(page.get_by_role("button", name="Open chat", exact=True)).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot(path=str(artifacts / "widget-390.png"))

    page.get_by_role("button", name="Request a phone call").click()
    page.get_by_label("Your phone number").fill("+1 555 010 2030")
    page.get_by_role("button", name="Call me").click()
    expect(page.get_by_text("We'll call you shortly")).to_be_visible()
    calls = httpx.get(f"{gateway.url}/v1/calls", headers=operator).json()["data"]["items"]
    assert [c["to"] for c in calls] == ["+15550102030"]


def test_a_site_not_in_allowed_origins_gets_a_clear_error_and_nothing_is_stored(
    browser: Browser, gateway: Gateway, shop: tuple[HostSite, str], operator: dict[str, str], artifacts: Path
) -> None:
    _, key = shop
    foreign = HostSite("127.0.0.1", free_port(), HOST_PAGE.format(gateway=gateway.url, key=key))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(foreign.origin + "/")
        page.get_by_role("button", name="Open chat").click()
        expect(page.get_by_role("alert")).to_contain_text("allowed origins")
        expect(page.get_by_label("Message", exact=True)).to_be_disabled()
        # Nothing to call from a page the server refuses; the header keeps a readable default.
        expect(page.get_by_role("button", name="Request a phone call")).to_be_hidden()
        header = page.get_by_role("dialog").locator("header")
        assert header.evaluate("h => getComputedStyle(h).backgroundColor") == "rgb(37, 99, 235)"
        page.screenshot(path=str(artifacts / "widget-refused-origin.png"))
    finally:
        context.close()
        foreign.close()
    stats = httpx.get(f"{gateway.url}/v1/chat/stats", headers=operator).json()["data"]
    assert stats["total"] == 0


def test_a_logged_in_user_continues_the_conversation_on_another_device(
    gateway: Gateway, admin: dict[str, str], operator: dict[str, str], browser: Browser
) -> None:
    port = free_port()
    secret = "host-site-identity-secret"
    widget = {"enabled": True, "allowed_origins": [f"http://localhost:{port}"], "identity_secret": secret}
    agent = httpx.post(f"{gateway.url}/v1/agents", json={"name": "Account help", "widget": widget}, headers=admin)
    key = agent.json()["data"]["widget"]["public_key"]
    digest = identity_hash(secret, "user-42")
    site = HostSite("localhost", port, USER_PAGE.format(gateway=gateway.url, key=key, user="user-42", hash=digest))
    devices = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    try:
        laptop = devices[0].new_page()
        laptop.goto(site.origin + "/")
        laptop.get_by_role("button", name="Open chat").click()
        laptop.get_by_label("Message", exact=True).fill("Started on my laptop")
        laptop.get_by_label("Message", exact=True).press("Enter")
        expect(laptop.locator(".msg.agent")).to_have_count(1)
        phone = devices[1].new_page()  # another device: nothing in its localStorage
        phone.goto(site.origin + "/")
        phone.get_by_role("button", name="Open chat").click()
        expect(phone.locator(".msg.customer")).to_contain_text("Started on my laptop")
    finally:
        for device in devices:
            device.close()
        site.close()
    sessions = httpx.get(f"{gateway.url}/v1/chat/sessions?channel=web", headers=operator).json()["data"]["items"]
    assert [s["customer_id"] for s in sessions] == ["user-42"]


def test_the_demo_page_works_under_its_strict_csp_with_no_keys(
    gateway: Gateway, store: Store, page: Page, artifacts: Path
) -> None:
    ensure_demo(store, demo_origins(gateway.url))
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{gateway.url}/widget/demo")  # the gateway's own origin: same-origin GETs carry no Origin
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("dialog", name="Acme Demo Store")).to_be_visible()
    page.get_by_label("Your name").fill("Newcomer")
    page.get_by_role("button", name="Start chat").click()
    page.get_by_label("Message", exact=True).fill("How long does shipping take?")
    page.get_by_label("Message", exact=True).press("Enter")
    expect(page.locator(".msg.agent").last).to_contain_text("3 to 5 business days")
    page.screenshot(path=str(artifacts / "widget-demo.png"))
    assert violations == []
