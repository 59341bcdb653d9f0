"""Access: optional API keys (401 with a Bearer challenge, constant-time comparison) and CORS for dashboards."""

import pytest
from pydantic import SecretStr

import service.http.auth
from service.http.auth import ApiKeys
from tests.api.test_errors import assert_error
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
KEYS = ["first-key-0123456789abcdef", "second-key-0123456789abcdef"]
DASHBOARD = "https://dash.example.com"


@pytest.fixture
def models():
    return {"tiny": tiny_loaded()}


GUARDED = [
    ("POST", "/v1/models/tiny/explain"),
    ("POST", "/v1/models/tiny/predict"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/tiny"),
    ("GET", "/v1/methods"),
    ("GET", "/metrics"),
]


async def call(client, method: str, path: str, image: bytes, headers: dict[str, str] | None = None):
    if method == "POST":
        return await client.post(path, files={"image": image}, headers=headers or {})
    return await client.get(path, headers=headers or {})


@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_with_keys_on_every_route_but_the_probes_needs_a_valid_key(serve, models, noise_png, method, path):
    async with serve(models, api_keys=",".join(KEYS)) as client:
        missing = await call(client, method, path, noise_png)
        assert_error(missing, 401, "missing_api_key", "Authorization: Bearer", "X-API-Key")
        assert missing.headers["www-authenticate"] == 'Bearer realm="explain"'
        for headers in (
            {"authorization": "Bearer " + KEYS[0][:-1] + "X"},  # differs in the last byte only
            {"x-api-key": "nope"},
            {"authorization": "Basic " + KEYS[0]},  # another scheme is no key at all
        ):
            refused = await call(client, method, path, noise_png, headers)
            code = "missing_api_key" if headers.get("authorization", "").startswith("Basic") else "invalid_api_key"
            assert_error(refused, 401, code)
            challenge = 'Bearer realm="explain"' + (', error="invalid_token"' if code == "invalid_api_key" else "")
            assert refused.headers["www-authenticate"] == challenge
        accepted = (
            {"authorization": f"Bearer {KEYS[1]}"},
            {"x-api-key": KEYS[0]},
            {"authorization": f"bearer {KEYS[0]}"},
        )
        for headers in accepted:
            assert (await call(client, method, path, noise_png, headers)).status_code == 200, headers
        for open_path in ("/healthz", "/readyz", "/openapi.json"):  # probes, and the contract
            assert (await client.get(open_path)).status_code == 200


async def test_keys_are_off_by_default(serve, models, noise_png):
    async with serve(models) as client:
        for method, path in GUARDED:
            assert (await call(client, method, path, noise_png)).status_code == 200, path


def test_every_key_is_compared_in_constant_time_whatever_matches(monkeypatch):
    compared: list[bytes] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return a == b

    monkeypatch.setattr(service.http.auth.secrets, "compare_digest", spy)
    keys = ApiKeys([SecretStr(k) for k in KEYS])
    for presented, expected in ((KEYS[0], True), (KEYS[1], True), ("x" * 26, False), ("é" * 20, False)):
        compared.clear()
        assert keys.matches(presented) is expected
        assert compared == [k.encode() for k in KEYS], presented  # all keys, even after the first one matched


async def test_cors_allows_listed_origins_only(serve, models, noise_png):
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-request-id",
    }
    async with serve(models, cors_origins=f"{DASHBOARD},http://localhost:3000", api_keys=KEYS[0]) as client:
        allowed = await client.options("/v1/models/tiny/explain", headers={"origin": DASHBOARD, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == DASHBOARD
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "Authorization" in allowed.headers["access-control-allow-headers"]

        headers = {"origin": DASHBOARD, "authorization": f"Bearer {KEYS[0]}"}
        answered = await client.post("/v1/models/tiny/explain", files={"image": noise_png}, headers=headers)
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == DASHBOARD
        assert {"x-request-id", "retry-after"} <= {
            h.strip().lower() for h in answered.headers["access-control-expose-headers"].split(",")
        }
        refused = await client.get("/v1/models", headers={"origin": DASHBOARD})  # a 401 the dashboard can read
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == DASHBOARD

        foreign = "https://evil.example.net"
        foreign_preflight = await client.options("/v1/models/tiny/explain", headers={"origin": foreign, **preflight})
        assert foreign_preflight.status_code == 400
        assert "access-control-allow-origin" not in foreign_preflight.headers
        foreign_get = await client.get("/healthz", headers={"origin": foreign})
        assert foreign_get.status_code == 200 and "access-control-allow-origin" not in foreign_get.headers


async def test_no_cors_headers_by_default(serve, models):
    async with serve(models) as client:
        preflight = await client.options(
            "/v1/models/tiny/explain", headers={"origin": DASHBOARD, "access-control-request-method": "POST"}
        )
        assert_error(preflight, 405, "method_not_allowed")
        response = await client.get("/healthz", headers={"origin": DASHBOARD})
    assert not [h for h in (*preflight.headers, *response.headers) if h.lower().startswith("access-control-")]
