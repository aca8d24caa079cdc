"""The browser set-up itself: chromium starts and renders a page the real web process serves."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.gateway import Gateway

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_chromium_renders_a_page_from_the_real_web_process(page: Page, gateway: Gateway) -> None:
    page.goto(f"{gateway.url}/openapi.json")
    assert "Chat Agent Gateway" in page.content()


def test_gateway_tokens_come_from_the_real_cli(gateway: Gateway) -> None:
    import httpx

    token = gateway.token("operator")
    assert httpx.get(f"{gateway.url}/v1/chat/sessions", headers={"API-Token": token}).status_code == 200
    assert httpx.get(f"{gateway.url}/v1/chat/sessions", headers={"API-Token": "nope"}).status_code == 401
