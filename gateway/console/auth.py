"""Console logins: a signed, HttpOnly, SameSite=Lax cookie naming a server-side login
(agent_core.store.logins), the token behind it re-checked through the TokenCache (a revoked
token stops working within TOKEN_CACHE_S), and a per-login CSRF token on every state change."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from agent_core.store import AsyncStore, logins, tokens
from agent_core.store.logins import Login
from agent_core.store.tokens import TokenRecord
from gateway.auth import OPERATOR, TokenCache

COOKIE = "chatgw_console"
LOGIN_CSRF_COOKIE = "chatgw_login_csrf"
LOGIN_CSRF_S = 3600
PATH = "/console"


class LoginRefused(Exception):
    """The token cannot open a console login; the message says why."""


@dataclass(frozen=True)
class Operator:
    """Who is signed in: the token's record (name = operator identity) and the login."""

    token: TokenRecord
    login: Login

    @property
    def name(self) -> str:
        return self.token.name

    @property
    def is_admin(self) -> bool:
        return self.token.role.value == "admin"


def _signer(request: Request, salt: str) -> URLSafeTimedSerializer:
    secret = request.app.state.settings.app.secret_key.get_secret_value()
    return URLSafeTimedSerializer(secret, salt=salt)


def _secure(request: Request) -> bool:
    return bool(urlsplit(request.app.state.settings.app.public_base_url).scheme == "https")


def _ttl(request: Request) -> int:
    return int(request.app.state.settings.app.console_session_s)


def _store(request: Request) -> AsyncStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def current(request: Request) -> Operator | None:
    """The signed-in operator, or None (no cookie, bad signature, expired, logged out, or the
    token revoked or no longer an operator's)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        login_id = _signer(request, "console-login").loads(raw, max_age=_ttl(request))
    except BadSignature:
        return None
    if not isinstance(login_id, str):
        return None
    login = await _store(request).run(logins.get(login_id))
    if login is None:
        return None
    cache: TokenCache = request.app.state.tokens
    record = await cache.lookup_digest(login.token_digest)
    if record is None or record.role not in OPERATOR:
        return None
    return Operator(token=record, login=login)


async def log_in(request: Request, token: str, response: Response) -> TokenRecord:
    """Open a login for an operator or admin token and set its cookie on `response`."""
    token = token.strip()
    if not token:
        raise LoginRefused("token: paste your operator token")
    cache: TokenCache = request.app.state.tokens
    record = await cache.lookup(token)
    if record is None:
        raise LoginRefused("token: not a valid token (it may have been revoked)")
    if record.role not in OPERATOR:
        raise LoginRefused(
            f"token: a '{record.role.value}' token cannot use the console; sign in with an operator or admin token"
        )
    login = await _store(request).run(logins.open_login(tokens.digest(token), _ttl(request)))
    response.set_cookie(
        COOKIE,
        _signer(request, "console-login").dumps(login.id),
        max_age=_ttl(request),
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PATH)
    return record


async def log_out(request: Request, operator: Operator, response: Response) -> None:
    await _store(request).run(logins.close(operator.login.id))
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax", secure=_secure(request))


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf(request: Request, response: Response, value: str) -> None:
    """The login form's CSRF token, double-submitted with a signed cookie."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        _signer(request, "login-csrf").dumps(value),
        max_age=LOGIN_CSRF_S,
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def login_csrf_ok(request: Request, presented: str) -> bool:
    raw = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not raw or not presented:
        return False
    try:
        value = _signer(request, "login-csrf").loads(raw, max_age=LOGIN_CSRF_S)
    except BadSignature:
        return False
    return isinstance(value, str) and hmac.compare_digest(value, presented)


def same_origin(request: Request) -> bool:
    """A browser's Origin (when it sends one) must be ours: a second guard beside the token."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    ours = {request.app.state.settings.app.public_base_url.rstrip("/"), f"{request.url.scheme}://{request.url.netloc}"}
    return origin.rstrip("/") in ours


def csrf_ok(request: Request, operator: Operator, presented: str | None) -> bool:
    return bool(presented) and same_origin(request) and hmac.compare_digest(operator.login.csrf, presented or "")
