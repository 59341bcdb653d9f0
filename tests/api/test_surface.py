"""The public surface is exactly the documented one: no route loads a model, changes the store or fetches a URL
a client names. (Weights load with `weights_only=True`: tests/model_store/test_store.py.)"""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastapi
import fastapi.routing
import pytest
import yaml

from service.core.settings import Settings
from service.http.app import create_app
from tests.api.test_catalog import ROOT
from tests.api.test_errors import assert_error
from tests.tiny_models import tiny_loaded

DOCUMENTED = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/methods"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/models/{model}/explain"),
    ("POST", "/v1/models/{model}/predict"),
    ("POST", "/v1/models/{model}/visualizations"),
    ("POST", "/v1/models/{model}/activations"),
    ("GET", "/v1/models/{model}/filters"),
    ("GET", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/events"),
}
FASTAPI_DOCS = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
# The page and the documentation's own assets (service/http/routes/page.py, docs.py): fixed names, not in the contract.
PAGE = {
    ("GET", "/"),
    ("GET", "/page/{name}"),
    ("GET", "/page/samples/{name}"),
    ("GET", "/page/models/{model}/labels"),
    ("GET", "/docs/assets/{name}"),
}


def served_routes(app: fastapi.FastAPI) -> list:
    """Every route the app answers, with included routers flattened (FastAPI >= 0.16x includes them lazily)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", list)
    return list(flatten(app.routes))


def test_the_routes_are_exactly_the_documented_ones():
    app = create_app(Settings(models=["tiny"]), models={"tiny": tiny_loaded()})
    routes = served_routes(app)
    assert [r.path for r in routes if not getattr(r, "methods", None)] == []  # no mounts, no websockets
    served = {(method, r.path) for r in routes for method in r.methods - {"HEAD"}}
    assert served == DOCUMENTED | FASTAPI_DOCS | PAGE  # nothing that registers, loads, reloads or deletes a model
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert {(m.upper(), path) for path, item in spec["paths"].items() for m in item} == DOCUMENTED


@pytest.fixture
def url_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request it gets (none are expected)."""
    hits: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_an_image_given_as_a_url_is_refused_not_fetched(serve, url_server):
    base, hits = url_server
    url = f"{base}/cat.jpg"
    async with serve({"tiny": tiny_loaded()}) as client:
        for text in (url, "file:///etc/passwd", f"data:text/uri-list,{url}"):
            assert_error(await client.post("/v1/models/tiny/explain", json={"image": text}), 422, "invalid_base64")
        as_field = await client.post("/v1/models/tiny/explain", data={"image": url, "method": "cam"}, files={"x": b""})
        assert_error(as_field, 400, "missing_image")
        as_body = await client.post("/v1/models/tiny/predict", content=url, headers={"content-type": "text/uri-list"})
        assert_error(as_body, 415, "unsupported_media_type")
        as_query = await client.post("/v1/models/tiny/explain", params={"image": url}, json={"image": "abcd"})
        assert_error(as_query, 400, "invalid_parameter", "image")
        assert (await client.post("/v1/models", json={"source": url})).status_code == 405
    assert hits == []
