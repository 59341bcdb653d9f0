"""Headers on every answer: `X-Instance` names the replica that served it (setting `instance_id`, default the host
name), and the security headers: nosniff, no referrer, and a Content Security Policy (the API's loads nothing;
the page and the documentation have their own, checked in a real browser by tests/page)."""

import socket

import pytest
from pydantic import ValidationError

from service.core.settings import Settings
from tests.tiny_models import tiny_loaded

EXPLAIN = "/v1/models/tiny/explain"


def test_the_instance_id_defaults_to_the_host_name_and_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("EXPLAIN_INSTANCE_ID", raising=False)
    assert Settings().instance_id == socket.gethostname()
    monkeypatch.setenv("EXPLAIN_INSTANCE_ID", "replica-7")
    assert Settings().instance_id == "replica-7"


@pytest.mark.parametrize("bad", ["", "two words", "new\nline", "x" * 129, "répl"])
def test_an_instance_id_that_is_not_a_header_value_stops_the_start(bad):
    with pytest.raises(ValidationError, match="instance id"):
        Settings(instance_id=bad)


@pytest.mark.anyio
async def test_every_answer_names_the_instance_successes_errors_and_refusals(serve, noise_png):
    async with serve({"tiny": tiny_loaded()}, instance_id="replica-a", max_body_bytes=64 * 1024) as client:
        answers = {
            "ok": await client.post(
                EXPLAIN, params={"method": "cam"}, content=noise_png, headers={"content-type": "image/png"}
            ),
            "ready": await client.get("/readyz"),
            "unknown route": await client.get("/nope"),
            "bad method": await client.post(
                EXPLAIN, params={"method": "nope"}, content=noise_png, headers={"content-type": "image/png"}
            ),
            "too large": await client.post(EXPLAIN, content=b"\0" * 100_000, headers={"content-type": "image/png"}),
            "metrics": await client.get("/metrics"),
        }
        client.app.state.lifecycle.begin_drain(5.0)
        answers["draining"] = await client.post(EXPLAIN, content=noise_png, headers={"content-type": "image/png"})
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "ok": 200,
        "ready": 200,
        "unknown route": 404,
        "bad method": 400,
        "too large": 413,
        "metrics": 200,
        "draining": 503,
    }
    assert {name: answer.headers.get("x-instance") for name, answer in answers.items()} == dict.fromkeys(
        answers, "replica-a"
    )
    assert all(answer.headers.get_list("x-instance") == ["replica-a"] for answer in answers.values())  # once
    for answer in answers.values():
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"]
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers.get_list("content-security-policy") == ["default-src 'none'; frame-ancestors 'none'"]


@pytest.mark.anyio
async def test_the_page_and_the_documentation_have_their_own_policies(serve):
    async with serve({"tiny": tiny_loaded()}) as client:
        page, swagger, redoc = [await client.get(path) for path in ("/", "/docs", "/redoc")]
    policies = {
        name: answer.headers.get_list("content-security-policy")
        for name, answer in {"page": page, "docs": swagger, "redoc": redoc}.items()
    }
    assert all(len(policy) == 1 for policy in policies.values()), policies
    for policy in (p[0] for p in policies.values()):
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in directives.get("script-src", "") and "*" not in policy
    # Swagger UI's one inline script is allowed by its hash, nothing else inline.
    assert policies["docs"][0].count("'sha256-") == 1 and policies["page"][0].count("'sha256-") == 0


@pytest.mark.anyio
async def test_cors_preflights_name_the_instance_too(serve):
    origin = "https://dash.example.com"
    async with serve({"tiny": tiny_loaded()}, instance_id="replica-b", cors_origins=[origin]) as client:
        preflight = await client.options(EXPLAIN, headers={"origin": origin, "access-control-request-method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["x-instance"] == "replica-b"
