"""One key attacks, another works: against a real server process with two API keys, tenant A holds its share of
long work, floods hostile JSON bodies and cheap requests, and fills its share of jobs, while tenant B's explain
request, job, visualization, feature maps and filters are all admitted and `/healthz` stays fast."""

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import image_bytes
from tests.explain_client.conftest import photo
from tests.load import HealthProbe
from tests.real_server import real_server

pytestmark = pytest.mark.slow
A = {"x-api-key": "hostile-tenant-a-0123456789"}
B = {"x-api-key": "working-tenant-b-0123456789"}
PNG = image_bytes(photo(), "PNG")
EXPLAIN = "/v1/models/tiny/explain"
LONG_VISUALIZATION = {"objective": {"kind": "class", "class": 1}, "steps": 4096}


def test_a_tenant_at_every_share_leaves_the_other_its_own():
    settings = {
        "api_keys": f"{A['x-api-key']},{B['x-api-key']}",
        "max_long_tasks": 4,
        "max_jobs": 8,
        "max_jobs_per_tenant": 4,
        "max_request_cost": 1_000_000,
    }
    with real_server(settings, forward_s=0.01) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        # A takes its share of long work (2 of 4) and of jobs (4 of 8), and is refused past them.
        vis = "/v1/models/tiny/visualizations"
        held = [client.post(vis, json=LONG_VISUALIZATION, headers=A) for _ in range(2)]
        assert [answer.status_code for answer in held] == [202, 202]
        assert client.post(vis, json=LONG_VISUALIZATION, headers=A).json()["error"]["code"] == "too_many_jobs"
        jobs = [client.post(EXPLAIN, files={"image": PNG}, headers=A | {"prefer": "respond-async"}) for _ in range(4)]
        refused = [answer.json()["error"]["code"] for answer in jobs if answer.status_code != 202]
        assert refused == [] or set(refused) == {"too_many_jobs"}

        hostile = b'{"image": "' + base64.b64encode(PNG) + b'", "class": [' + b",".join([b"0"] * 4_000_000) + b"]}"
        flooding = threading.Event()

        def flood() -> None:
            with httpx.Client(base_url=server.url, timeout=60, headers=A) as attacker:
                while not flooding.is_set():
                    attacker.post(EXPLAIN, content=hostile, headers={"content-type": "application/json"})
                    attacker.post(EXPLAIN, files={"image": PNG})

        with HealthProbe(server.url) as probe, ThreadPoolExecutor(2) as pool:
            running = [pool.submit(flood), pool.submit(flood)]
            try:
                time.sleep(0.5)
                # B is served all along: an explain request, a job, a visualization, feature maps and filters.
                assert client.post(EXPLAIN, files={"image": PNG}, headers=B).status_code == 200
                job = client.post(EXPLAIN, files={"image": PNG}, headers=B | {"prefer": "respond-async"})
                assert job.status_code == 202, job.text
                visualization = client.post(vis, json={**LONG_VISUALIZATION, "steps": 5}, headers=B)
                assert visualization.status_code == 202, visualization.text
                assert client.post("/v1/models/tiny/activations", files={"image": PNG}, headers=B).status_code == 200
                assert client.get("/v1/models/tiny/filters", headers=B).status_code == 200
                for location in (job.headers["location"], visualization.headers["location"]):
                    for _ in range(500):
                        status = client.get(location, headers=B).json()["status"]
                        if status not in ("queued", "running"):
                            break
                        time.sleep(0.02)
                    assert status == "succeeded", location
            finally:
                flooding.set()
                for future in running:
                    future.result()
        assert probe.latencies and max(probe.latencies) < 1.0, sorted(probe.latencies)[-5:]
