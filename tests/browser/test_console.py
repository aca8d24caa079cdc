"""The operator console in a real browser (Debian's chromium through Playwright) against real
web and worker processes: what an operator does all day, step by step."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from agent_core.models import Channel
from agent_core.store import Store, agents, sessions
from agent_core.support import Command, run_command
from tests.browser.console_steps import make_agent, received_by, sign_in, text_in
from tests.browser.gateway import Gateway
from tests.helpers import eventually

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CUSTOMER = "+15557654321"


def test_operator_sees_a_help_request_live_takes_over_replies_whispers_and_hands_back(
    page: Page, browser: Browser, gateway: Gateway, store: Store, artifacts: Path
) -> None:
    admin = gateway.token("admin", "admin@example.com")
    operator = gateway.token("operator", "alice@example.com")
    make_agent(gateway, admin)
    sign_in(page, gateway, operator)
    rows = page.get_by_role("list", name="Sessions")
    inbox_context = browser.new_context(viewport={"width": 1280, "height": 800})
    inbox = inbox_context.new_page()
    sign_in(inbox, gateway, operator, "/console?view=inbox")
    expect(inbox.get_by_text("No one is waiting for help.")).to_be_visible()

    text_in(gateway, store, CUSTOMER, "Hello, where is my order?")
    row = rows.get_by_role("listitem").filter(has_text=CUSTOMER)
    expect(row).to_be_visible()
    expect(row).to_contain_text("where is my order")

    text_in(gateway, store, CUSTOMER, "I want to talk to a human")
    expect(row.get_by_text("Help requested")).to_be_visible()
    expect(page.locator('#stats [data-stat="help_requested"]')).to_have_text("1")
    waiting = inbox.get_by_role("list", name="Help requests").get_by_role("listitem").filter(has_text=CUSTOMER)
    expect(waiting).to_be_visible()
    expect(waiting.locator(".waited")).to_contain_text("waiting")
    page.screenshot(path=str(artifacts / "console-sessions-1280.png"), full_page=True)
    inbox.screenshot(path=str(artifacts / "console-inbox-1280.png"), full_page=True)

    row.get_by_role("link").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("I want to talk to a human")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator("#handler")).to_contain_text("Handled by alice@example.com (you)")
    expect(page.get_by_role("button", name="Hand back to AI")).to_be_visible()
    # The help request was cleared by the takeover: the other operator's inbox empties live.
    expect(waiting).to_have_count(0)
    # The other operator watches the dev outbox: the reply shows there live, as "not sent".
    inbox.goto(gateway.url + "/console/outbox")
    expect(inbox.get_by_role("heading", name="Dev outbox")).to_be_visible()

    box = page.get_by_label("Message")
    box.fill("Hi, Alice here. Let me check your order.")
    box.press("Enter")
    reply = thread.get_by_role("listitem").filter(has_text="Alice here")
    expect(reply).to_be_visible()
    expect(reply).to_have_class("msg role-operator")
    expect(reply.locator(".delivery")).to_contain_text("dev_outbox")
    eventually(lambda: "Hi, Alice here. Let me check your order." in received_by(store, CUSTOMER))
    expect(inbox.locator("#outbox")).to_contain_text("Hi, Alice here. Let me check your order.")

    box.fill("Customer ordered twice, refund one")
    page.get_by_role("button", name="Whisper").click()
    whisper = thread.get_by_role("listitem").filter(has_text="refund one")
    expect(whisper).to_be_visible()
    expect(whisper.get_by_text("private", exact=True)).to_be_visible()
    expect(whisper).to_contain_text("Whisper (private)")

    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(artifacts / "console-session-1280.png"), full_page=True)
    page.get_by_role("button", name="Hand back to AI").click()
    expect(page.locator("#handler")).to_contain_text("The AI is handling this conversation")
    expect(page.get_by_role("button", name="Take over")).to_be_visible()
    assert not any("refund one" in t for t in received_by(store, CUSTOMER))

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Take over")).to_be_visible()
    page.screenshot(path=str(artifacts / "console-session-390.png"), full_page=True)
    page.goto(gateway.url + "/console")
    expect(rows.get_by_role("listitem").filter(has_text=CUSTOMER)).to_be_visible()
    page.screenshot(path=str(artifacts / "console-sessions-390.png"), full_page=True)
    inbox_context.close()


def test_a_script_from_a_customer_renders_as_text(page: Page, gateway: Gateway, store: Store) -> None:
    admin = gateway.token("admin")
    operator = gateway.token("operator")
    make_agent(gateway, admin)
    sign_in(page, gateway, operator)
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    text_in(gateway, store, CUSTOMER, evil)
    row = page.get_by_role("list", name="Sessions").get_by_role("listitem").filter(has_text=CUSTOMER)
    expect(row).to_contain_text("<script>window.pwned = 1</script>")
    row.get_by_role("link").click()
    expect(page.locator("#thread")).to_contain_text(evil)
    assert page.evaluate("window.pwned") is None
    assert page.locator("#thread img").count() == 0


def test_an_admin_uploads_a_document_and_watches_it_become_ready(page: Page, gateway: Gateway, artifacts: Path) -> None:
    admin = gateway.token("admin")
    make_agent(gateway, admin, name="Docs Agent")
    sign_in(page, gateway, admin, "/console/knowledge")
    # Over the inline limit, so a worker indexes it: the page follows "indexing" to "ready".
    body = "\n\n".join(f"## Topic {i}\n\nReturns for item {i} are accepted within 30 days." for i in range(6000))
    path = artifacts / "faq-upload.md"
    path.write_text(body)
    page.get_by_label("Agent").select_option(label="Docs Agent")
    page.get_by_label("File (text, Markdown, CSV or HTML)").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-pct")).to_contain_text("100%")
    expect(page.locator("#index-state")).to_contain_text("Ready", timeout=30_000)
    assert page.locator("#upload-bar").get_attribute("value") == "100"
    page.screenshot(path=str(artifacts / "console-knowledge-1280.png"), full_page=True)
    page.reload()
    expect(page.locator("#docs")).to_contain_text("faq-upload.md")
    expect(page.locator("#docs")).to_contain_text("Docs Agent")


def test_an_api_token_cannot_sign_in(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/console")
    page.get_by_label("Token").fill(gateway.token("api"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot use the console")


def test_a_dropped_live_connection_is_shown_and_caught_up_on_reconnect(
    page: Page, gateway: Gateway, store: Store
) -> None:
    admin = gateway.token("admin")
    operator = gateway.token("operator")
    agent_id = make_agent(gateway, admin)["id"]
    text_in(gateway, store, CUSTOMER, "Hello there")
    sign_in(page, gateway, operator)
    listing = page.context.new_page()
    listing.goto(gateway.url + "/console")
    rows = listing.get_by_role("list", name="Sessions")
    expect(rows.get_by_role("listitem")).to_have_count(1)
    page.get_by_role("list", name="Sessions").get_by_role("link").first.click()
    expect(page.locator("#thread")).to_contain_text("Hello there")
    sid = page.url.rsplit("/", 1)[1]

    def meanwhile() -> None:
        agent = store.run(agents.get(agent_id))
        assert agent is not None
        store.run(
            run_command(
                session_id=sid,
                agent=agent,
                operator="bob@example.com",
                command=Command.whisper,
                message="written while the console was cut off",
            )
        )
        opened = sessions.open_session(
            agent_id=agent_id,
            customer_id="late-customer",
            channel=Channel.api,
            input_fields=None,
            context=(),
            welcome=None,
        )
        assert store.run(opened).status == "ok"

    def shown_as_down() -> None:
        expect(page.locator("#live-status")).to_contain_text("disconnected")
        expect(listing.locator("#live-status")).to_contain_text("disconnected")

    gateway.restart_web(while_down=meanwhile, on_down=shown_as_down)
    expect(page.locator("#thread")).to_contain_text("written while the console was cut off", timeout=20_000)
    expect(page.locator("#live-status")).to_be_hidden(timeout=10_000)
    expect(rows.get_by_role("listitem").filter(has_text="late-customer")).to_be_visible(timeout=20_000)
    expect(rows.get_by_role("listitem")).to_have_count(2)
