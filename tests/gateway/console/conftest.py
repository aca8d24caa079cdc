"""Console fixtures: the real app on a TestClient at PUBLIC_BASE_URL (https, so the cookie is
Secure), and a helper that signs in through the login form as a browser does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_core.settings import Settings
from gateway.app import create_app
from tests.conftest import PUBLIC_URL

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def web(settings: Settings, redis_url: str, ctx: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, redis_url), base_url=PUBLIC_URL) as client:
        yield client


def login_form_csrf(client: TestClient) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    found = CSRF_FIELD.search(page.text)
    assert found, page.text
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the form; returns the console's CSRF token (from the page's meta tag)."""
    r = client.post(
        "/console/login", data={"token": token, "csrf_token": login_form_csrf(client)}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    page = client.get("/console")
    assert page.status_code == 200, page.text
    found = CSRF_META.search(page.text)
    assert found
    return found.group(1)


def make_agent(client: TestClient, admin: dict[str, str], **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/agents", json={"name": "Acme", "debounce_ms": 0, **extra}, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def inbound(client: TestClient, api: dict[str, str], agent_id: str, text: str, customer: str = "c1") -> str:
    r = client.post(
        "/v1/chat/inbound?wait=0",
        json={"agent_uuid": agent_id, "customer_id": customer, "content": text},
        headers=api,
    )
    assert r.status_code in (200, 202), r.text
    return r.json()["data"]["session_id"]  # type: ignore[no-any-return]
