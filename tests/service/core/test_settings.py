"""Settings: safe defaults (loopback only, no keys, no CORS) and values that fail fast at start-up."""

import logging
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.core import server as server_module
from service.core.server import build_server
from service.core.settings import Settings
from service.http.app import create_app
from tests.real_server import ROOT
from tests.tiny_models import tiny_loaded


@pytest.fixture
def clean_env(monkeypatch):
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


def test_a_refused_key_list_never_shows_its_keys(clean_env):
    good = "a-good-key-0123456789"
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=f"{good},short")
    assert "API key #2" in str(refused.value)
    assert good not in str(refused.value)


def test_the_entry_point_refuses_bad_keys_without_printing_them(clean_env):
    good = "a-good-key-0123456789"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIN_")}
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        env=environment | {"EXPLAIN_API_KEYS": f"{good},short"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "API key #2" in done.stderr
    assert good not in done.stdout + done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_without_keys_the_service_binds_loopback(clean_env, host):
    assert Settings(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "explain.example.com"])
def test_without_keys_an_exposed_address_is_refused(clean_env, host):
    with pytest.raises(ValidationError, match="not a loopback address and no EXPLAIN_API_KEYS"):
        Settings(host=host)
    assert Settings(host=host, api_keys="a-good-key-0123456789").host == host
    assert Settings(host=host, allow_anonymous=True).allow_anonymous


def test_serving_without_keys_logs_a_warning(clean_env, caplog, monkeypatch):
    settings = Settings()
    monkeypatch.setattr(server_module.DrainingServer, "run", lambda self: None)
    with caplog.at_level(logging.WARNING, logger="service.core.server"):
        assert server_module.serve(create_app(settings, models={"tiny": tiny_loaded()}), settings) == 0
    assert any("no API keys" in record.getMessage() for record in caplog.records)
    caplog.clear()
    keyed = Settings(api_keys="a-good-key-0123456789")
    with caplog.at_level(logging.WARNING, logger="service.core.server"):
        server_module.serve(create_app(keyed, models={"tiny": tiny_loaded()}), keyed)
    assert not any("no API keys" in record.getMessage() for record in caplog.records)
