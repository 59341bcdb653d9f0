"""Settings: safe defaults (loopback only, no keys, no CORS) and values that fail fast at start-up."""

import pytest
from pydantic import ValidationError

from service.core.server import build_server
from service.core.settings import Settings
from service.http.app import create_app
from tests.tiny_models import tiny_loaded


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("EXPLAIN_"):
            monkeypatch.delenv(name)


def test_the_service_binds_to_loopback_by_default(clean_env):
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.api_keys == [] and settings.cors_origins == [] and settings.shutdown_grace_s == 25
    server = build_server(create_app(settings, models={"tiny": tiny_loaded()}), settings)
    assert server.config.host == "127.0.0.1"
    assert server.config.timeout_graceful_shutdown == settings.shutdown_grace_s


def test_lists_come_comma_separated_from_the_environment(clean_env, monkeypatch):
    monkeypatch.setenv("EXPLAIN_API_KEYS", " a-key-of-16-chars!, another-key-0123456789 ")
    monkeypatch.setenv("EXPLAIN_CORS_ORIGINS", "https://dash.example.com,http://localhost:3000")
    monkeypatch.setenv("EXPLAIN_SHUTDOWN_GRACE_S", "7.5")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["a-key-of-16-chars!", "another-key-0123456789"]
    assert "a-key-of-16-chars" not in repr(settings)  # keys never show in logs or tracebacks
    assert settings.cors_origins == ["https://dash.example.com", "http://localhost:3000"]
    assert settings.shutdown_grace_s == 7.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_keys": "short"}, "API key #1"),
        ({"api_keys": "a-good-key-0123456789,has space in it 0123"}, "API key #2"),
        ({"cors_origins": "*"}, "not accepted"),
        ({"cors_origins": "https://dash.example.com/app"}, "no path"),
        ({"cors_origins": "dash.example.com"}, "scheme://host"),
        ({"shutdown_grace_s": 0}, "greater than 0"),
    ],
)
def test_bad_values_fail_fast(clean_env, values, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**values)
