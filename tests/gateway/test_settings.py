"""Settings fail fast with the variable's name."""

from __future__ import annotations

import pytest

from agent_core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "http://nope"}, "REDIS_URL: REDIS_URL must start with redis://, rediss:// or unix://"),
        ({"TWILIO_ACCOUNT_SID": "XX123"}, "TWILIO_ACCOUNT_SID: TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex"),
        ({"PUBLIC_BASE_URL": "gw.example.com"}, "PUBLIC_BASE_URL: PUBLIC_BASE_URL must be an absolute http(s) URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"MAX_BODY_BYTES": "ten"}, "MAX_BODY_BYTES: Input should be a valid integer"),
    ],
)
def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    # load_settings() reads the process environment by design; this is the one place tests set it.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert message in str(info.value)


def test_signature_checks_cannot_be_disabled_in_production_with_a_real_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGW_ENV", "production")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "f" * 32)
    monkeypatch.setenv("TWILIO_VALIDATE_SIGNATURES", "false")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "TWILIO_VALIDATE_SIGNATURES=false is refused in production" in str(info.value)


def test_provider_is_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert load_settings().llm.provider == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert load_settings().llm.provider == "openai"
