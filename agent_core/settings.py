"""Typed settings of every process, read from the environment (and an optional `.env`), validated at start.

Each concern has its own class; `Settings` composes them. Tests build them with keyword
arguments (`Settings(redis=RedisSettings(url=...))`) instead of mutating the environment.
A leaf module: the web, worker and CLI processes read it; nothing else in agent_core
imports it (the domain is handed values).
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class Environment(StrEnum):
    development = "development"
    production = "production"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="REDIS_")

    url: str | None = Field(default=None, description="REDIS_URL; unset starts an embedded Redis")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value


class TwilioSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="TWILIO_")

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    api_base_url: str = "https://api.twilio.com"
    validate_signatures: bool = True
    messages_per_second: float = Field(default=10.0, gt=0, description="TWILIO_MESSAGES_PER_SECOND per sender")

    @field_validator("account_sid")
    @classmethod
    def _check_sid(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not (value.startswith("AC") and len(value) == 34):
            raise ValueError("TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex characters")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _check_base(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("TWILIO_API_BASE_URL must be an http(s) URL")
        return value.rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token and self.auth_token.get_secret_value())


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="")

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)

    @field_validator("openai_base_url")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("OPENAI_BASE_URL must be an http(s) URL")
        return value

    @property
    def provider(self) -> str:
        """`openai` when a key is configured, else the embedded `offline` responder."""
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else ""
        return "openai" if key else "offline"


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="")

    env: Annotated[Environment, Field(validation_alias="CHATGW_ENV")] = Environment.development
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    lifecycle_sweep_s: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    log_format: LogFormat | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    inbound_wait_s: float = Field(default=25.0, ge=0, le=60, validation_alias="INBOUND_WAIT_S")
    token_cache_s: float = Field(default=5.0, ge=0, validation_alias="TOKEN_CACHE_S")
    # How long a console login lasts (SPEC §10), logout ends it sooner.
    console_session_s: int = Field(default=12 * 3600, ge=60, validation_alias="CONSOLE_SESSION_S")
    # How long a turn lock lives without renewal: a killed worker's turn is requeued after it.
    turn_lease_s: float = Field(default=30.0, ge=1, le=600, validation_alias="TURN_LEASE_S")
    host: str = Field(default="0.0.0.0", validation_alias="HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="PORT")
    # Turns one worker process holds in flight; unset: sized from the process's memory.
    worker_concurrency: int | None = Field(default=None, ge=1, le=10_000, validation_alias="WORKER_CONCURRENCY")
    # Where `chatgw up` keeps the embedded Redis and the demo's tokens.
    data_dir: str = Field(default="var", validation_alias="CHATGW_DATA_DIR")
    # Unset: /metrics is open, for a scraper on a private network. Set it where the web port
    # is public (a PaaS gives one port): scrapers then send `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = Field(default=None, validation_alias="METRICS_TOKEN")
    # Per API token (SPEC §6's 429): a sustained rate and the burst on top; 0 turns it off.
    api_rate_per_s: float = Field(default=1000.0, ge=0, validation_alias="API_RATE_PER_S")
    api_rate_burst: int = Field(default=10_000, ge=1, validation_alias="API_RATE_BURST")
    # The web widget's abuse limits (SPEC §14), per client IP and per visitor; 0 turns one off.
    widget_requests_per_minute_ip: float = Field(default=600, ge=0, validation_alias="WIDGET_REQUESTS_PER_MINUTE_IP")
    widget_messages_per_minute_ip: float = Field(default=60, ge=0, validation_alias="WIDGET_MESSAGES_PER_MINUTE_IP")
    widget_messages_per_minute_visitor: float = Field(
        default=20, ge=0, validation_alias="WIDGET_MESSAGES_PER_MINUTE_VISITOR"
    )
    widget_sessions_per_hour_ip: float = Field(default=20, ge=0, validation_alias="WIDGET_SESSIONS_PER_HOUR_IP")
    widget_max_message_chars: int = Field(default=4000, ge=1, le=100_000, validation_alias="WIDGET_MAX_MESSAGE_CHARS")

    @field_validator("public_base_url")
    @classmethod
    def _check_public(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("PUBLIC_BASE_URL must be an absolute http(s) URL, e.g. https://chat.example.com")
        return value.rstrip("/")

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("METRICS_TOKEN must be at least 16 characters (e.g. openssl rand -hex 16)")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def resolved_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.json if self.env is Environment.production else LogFormat.console


class Settings(BaseModel):
    """Everything the processes need; `Settings.load()` reads the environment."""

    app: AppSettings = Field(default_factory=AppSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)

    @model_validator(mode="after")
    def _check_signature_switch(self) -> Settings:
        # Turning signature checks off with a real auth token in production would let anyone
        # impersonate Twilio; refuse rather than warn.
        if not self.twilio.validate_signatures and self.twilio.configured and self.app.env is Environment.production:
            raise ValueError("TWILIO_VALIDATE_SIGNATURES=false is refused in production while TWILIO_AUTH_TOKEN is set")
        return self

    @classmethod
    def load(cls) -> Settings:
        return cls(app=AppSettings(), redis=RedisSettings(), twilio=TwilioSettings(), llm=LLMSettings())


class SettingsError(Exception):
    """Raised with one readable line per bad variable."""


_ENV_NAMES = {
    "url": "REDIS_URL",
    "account_sid": "TWILIO_ACCOUNT_SID",
    "auth_token": "TWILIO_AUTH_TOKEN",
    "api_base_url": "TWILIO_API_BASE_URL",
    "validate_signatures": "TWILIO_VALIDATE_SIGNATURES",
    "messages_per_second": "TWILIO_MESSAGES_PER_SECOND",
}


def load_settings() -> Settings:
    """Read and validate the environment; raise `SettingsError` naming every bad variable."""
    try:
        return Settings.load()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][-1]) if err["loc"] else "settings"
            env_name = _ENV_NAMES.get(name, name.upper())
            lines.append(f"{env_name}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
