"""Console login (SPEC §10): operator and admin tokens only, a signed HttpOnly SameSite cookie
that expires and ends on logout (server-side), revocation within TOKEN_CACHE_S, CSRF on the
login form, nothing shown without a session."""

from __future__ import annotations

from typing import Any

import redis
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from starlette.testclient import TestClient

from agent_core.settings import Settings
from agent_core.store import Store, tokens
from gateway.console.auth import COOKIE
from tests.gateway.console.conftest import login_form_csrf, sign_in


def test_login_page_has_a_strict_csp_and_no_inline_script(web: TestClient) -> None:
    r = web.get("/console/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in r.text and " style=" not in r.text and "<style" not in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_operator_token_signs_in_with_a_secure_httponly_samesite_cookie(
    web: TestClient, tokens_by_role: dict[str, str], settings: Settings
) -> None:
    r = web.post(
        "/console/login",
        data={"token": tokens_by_role["operator"], "csrf_token": login_form_csrf(web), "next": "/console?view=inbox"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console?view=inbox"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE + "="))
    attrs = cookie.lower()
    assert "httponly" in attrs and "samesite=lax" in attrs and "secure" in attrs and "path=/console" in attrs
    assert f"max-age={settings.app.console_session_s}" in attrs
    page = web.get("/console")
    assert page.status_code == 200 and "alice@example.com" in page.text and 'id="stats"' in page.text


def test_admin_token_signs_in(web: TestClient, tokens_by_role: dict[str, str]) -> None:
    sign_in(web, tokens_by_role["admin"])
    assert "admin@example.com" in web.get("/console").text


def test_api_token_is_refused_with_the_reason(web: TestClient, tokens_by_role: dict[str, str]) -> None:
    r = web.post("/console/login", data={"token": tokens_by_role["api"], "csrf_token": login_form_csrf(web)})
    assert r.status_code == 403
    assert "a &#39;api&#39; token cannot use the console" in r.text
    assert COOKIE not in web.cookies
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_an_invalid_token_is_refused(web: TestClient) -> None:
    r = web.post("/console/login", data={"token": "cgw_nope", "csrf_token": login_form_csrf(web)})
    assert r.status_code == 401 and "not a valid token" in r.text
    assert COOKIE not in web.cookies


def test_login_without_the_form_csrf_token_is_refused(web: TestClient, tokens_by_role: dict[str, str]) -> None:
    login_form_csrf(web)
    r = web.post("/console/login", data={"token": tokens_by_role["operator"], "csrf_token": "forged"})
    assert r.status_code == 403 and "csrf_token" in r.text
    assert COOKIE not in web.cookies


def test_pages_and_streams_need_a_session(web: TestClient) -> None:
    for path in ("/console", "/console/sessions/00000000-0000-4000-8000-000000000000", "/console/knowledge"):
        r = web.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next="), path
    for path in ("/console/events", "/console/sessions/00000000-0000-4000-8000-000000000000/events"):
        r = web.get(path)
        assert r.status_code == 401, path
    r = web.post("/console/sessions/00000000-0000-4000-8000-000000000000/command", data={"command": "close"})
    assert r.status_code == 401


def test_logout_ends_the_session_server_side(web: TestClient, tokens_by_role: dict[str, str]) -> None:
    csrf = sign_in(web, tokens_by_role["operator"])
    copied = web.cookies[COOKIE]
    r = web.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    web.cookies.clear()
    web.cookies.set(COOKIE, copied, domain="gw.example.com", path="/console")
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_logout_needs_the_csrf_token(web: TestClient, tokens_by_role: dict[str, str]) -> None:
    sign_in(web, tokens_by_role["operator"])
    assert web.post("/console/logout", data={"csrf_token": "x"}).status_code == 403
    assert web.get("/console", follow_redirects=False).status_code == 200


class _OldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return super().get_timestamp() - 13 * 3600


def test_an_expired_cookie_is_refused(web: TestClient, tokens_by_role: dict[str, str], settings: Settings) -> None:
    sign_in(web, tokens_by_role["operator"])
    login_id = URLSafeTimedSerializer(settings.app.secret_key.get_secret_value(), salt="console-login").loads(
        web.cookies[COOKIE]
    )
    secret = settings.app.secret_key.get_secret_value()
    old = URLSafeTimedSerializer(secret, salt="console-login", signer=_OldSigner).dumps(login_id)
    web.cookies.clear()
    web.cookies.set(COOKIE, old, domain="gw.example.com", path="/console")
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_the_login_expires_in_redis_with_the_cookie(
    web: TestClient, tokens_by_role: dict[str, str], settings: Settings, redis_url: str
) -> None:
    sign_in(web, tokens_by_role["operator"])
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    (key,) = r.keys("gw:login:*")
    assert 0 < r.ttl(key) <= settings.app.console_session_s


def test_a_forged_cookie_is_refused(web: TestClient) -> None:
    web.cookies.set(COOKIE, "abc.def.ghi", domain="gw.example.com", path="/console")
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_a_revoked_token_stops_working(web: TestClient, tokens_by_role: dict[str, str], store: Store) -> None:
    # The test settings cache tokens for 0 s (TOKEN_CACHE_S): the revoke is seen at once.
    sign_in(web, tokens_by_role["operator"])
    assert store.run(tokens.revoke("alice@example.com"))
    assert web.get("/console", follow_redirects=False).status_code == 303
    assert web.get("/console/events").status_code == 401


def test_next_never_leaves_the_console(web: TestClient, tokens_by_role: dict[str, str], **_: Any) -> None:
    r = web.post(
        "/console/login",
        data={"token": tokens_by_role["operator"], "csrf_token": login_form_csrf(web), "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console"
