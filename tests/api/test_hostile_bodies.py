"""Bodies built to hold the event loop: 9 MB JSON documents of millions of values are refused before they are
parsed, and `/healthz` keeps answering meanwhile (a real server process, the tiny model)."""

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import image_bytes
from tests.explain_client.conftest import photo
from tests.load import HealthProbe
from tests.real_server import real_server

pytestmark = pytest.mark.slow
URL = "/v1/models/tiny/explain"
IMAGE = base64.b64encode(image_bytes(photo(), "PNG")).decode()


def hostile_bodies() -> list[bytes]:
    """About 9 MB each: a class list of 4.5 million indices, a method list of 1.5 million names, and an object
    of 700,000 keys."""
    classes = b'{"image": "' + IMAGE.encode() + b'", "class": [' + b",".join([b"0"] * 4_500_000) + b"]}"
    methods = b'{"image": "' + IMAGE.encode() + b'", "method": [' + b",".join([b'"cam"'] * 1_500_000) + b"]}"
    keys = b'{"image": "' + IMAGE.encode() + b'", ' + b",".join(b'"k%d": 0' % i for i in range(700_000)) + b"}"
    return [classes, methods, keys]


def test_millions_of_json_values_are_refused_while_health_checks_stay_fast():
    bodies = hostile_bodies()
    assert all(8_000_000 < len(body) < 10 * 1024 * 1024 for body in bodies)
    with real_server({}) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def post(body: bytes) -> httpx.Response:
            return client.post(URL, content=body, headers={"content-type": "application/json"})

        with HealthProbe(server.url) as probe, ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(post, bodies * 2))
        for answer in answers:
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["code"] == "invalid_json" and "at most 4096" in error["message"]
        assert probe.latencies and max(probe.latencies) < 1.0, sorted(probe.latencies)[-5:]

        # Below the separator bound, a long list is refused by its length before any item is checked.
        listed = {"image": IMAGE, "class": [0] * 2000}
        answer = client.post(URL, json=listed)
        assert answer.status_code == 400 and "class: at most 64 values, not 2000" in answer.json()["error"]["message"]
        assert client.post(URL, json={"image": IMAGE, "class": [0, 1]}).status_code == 200
