"""What a model sees, over HTTP: feature visualizations as jobs, an image's feature maps, the first filters."""

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.api.test_jobs import ASYNC, events, wait_until_finished
from tests.api.test_long_work import slow_model
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio


def png_pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)), formats=["PNG"]))


async def test_a_visualization_job_reports_its_steps_and_ends_with_the_image(serve):
    request = {"objective": {"kind": "class", "class": "class_2"}, "steps": 12, "size": [24, 40], "seed": 3}
    async with serve({"tiny": tiny_loaded()}) as client:
        accepted = await client.post("/v1/models/tiny/visualizations", json=request)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["kind"] == "visualization" and accepted.json()["progress"]["total"] == 12
        received = await events(client, accepted.headers["location"])
        again = await client.post("/v1/models/tiny/visualizations", json=request)
        repeated = await wait_until_finished(client, again.headers["location"])
    steps = [data["progress"]["done"] for name, data in received if name == "progress"]
    assert steps == sorted(steps) and steps[-1] >= 10 and received[-1][0] == "succeeded"
    result = received[-1][1]["result"]
    assert png_pixels(result["image_png"]).shape == (24, 40, 3)
    assert len(result["top_classes"]) == 5 and np.isfinite(result["objective"])
    assert repeated["result"]["image_png"] == result["image_png"]  # same seed and parameters: the same bytes


async def test_visualization_requests_are_checked_before_they_run(serve):
    async with serve({"tiny": tiny_loaded()}, max_request_cost=30) as client:
        url = "/v1/models/tiny/visualizations"
        for body, code in (
            ({"objective": {"kind": "class", "class": 9}}, "unknown_class"),
            ({"objective": {"kind": "channel", "layer": "nope", "channel": 0}}, "unknown_layer"),
            ({"objective": {"kind": "channel", "layer": "features", "channel": 8}}, "invalid_parameter"),
            ({"objective": {"kind": "neuron", "layer": "features", "channel": 0, "x": 8}}, "invalid_parameter"),
            ({"objective": {"kind": "pixel"}}, "invalid_parameter"),
            ({"objective": {"kind": "class", "class": 1}, "steps": 11}, "cost_exceeded"),  # 33 > 30
            # A canvas of 4 input sizes adds a pass to each step: 8 x 4 > 30 (8 x 3 at the input size).
            ({"objective": {"kind": "class", "class": 1}, "steps": 8, "size": [64, 64]}, "cost_exceeded"),
        ):
            answer = await client.post(url, json=body)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == code, (body, answer.text)
        assert (await client.post(url, content=b"{", headers={"content-type": "application/json"})).status_code == 400
        assert (await client.post(url, content=b"{}", headers={"content-type": "text/plain"})).status_code == 415


async def test_a_cheap_request_is_answered_while_visualizations_run(serve, noise_png):
    async with serve(slow_model(0.02)) as client:
        jobs = [
            await client.post(
                "/v1/models/slow/visualizations", json={"objective": {"kind": "class", "class": c}, "steps": 200}
            )
            for c in (0, 1)
        ]
        for _ in range(3):
            cheap = await client.post("/v1/models/slow/explain", files={"image": noise_png})
            assert cheap.status_code == 200
        statuses = [(await client.get(job.headers["location"])).json() for job in jobs]
        assert all(s["status"] == "running" and s["progress"]["done"] < 200 for s in statuses)
        for job in jobs:
            assert (await client.delete(job.headers["location"])).json()["status"] == "cancelled"


async def test_feature_maps_of_an_image_at_a_layer(serve, noise_png):
    async with serve({"tiny": tiny_loaded()}) as client:
        answer = await client.post("/v1/models/tiny/activations", params={"top_n": 3}, files={"image": noise_png})
        default = await client.post("/v1/models/tiny/activations", files={"image": noise_png}, data={"layer": "stem"})
        wrong = await client.post("/v1/models/tiny/activations", params={"layer": "fc"}, files={"image": noise_png})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["layer"] == "features" and body["shape"] == [8, 8, 8] and len(body["means"]) == 8
    channels = [c["channel"] for c in body["top_channels"]]
    assert channels == sorted(range(8), key=lambda c: -body["means"][c])[:3]
    first = np.array(body["top_channels"][0]["map"]["data"])
    assert first.shape == (8, 8) and np.isclose(first.mean(), body["means"][channels[0]], atol=1e-5)
    assert png_pixels(body["grid_png"]).shape[2] == 3
    assert default.json()["layer"] == "stem" and len(default.json()["top_channels"]) == 6  # 6 channels < 16
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "unknown_layer"


async def test_filters_of_the_first_convolution(serve):
    async with serve({"tiny": tiny_loaded()}) as client:
        first = await client.get("/v1/models/tiny/filters")
        named = await client.get("/v1/models/tiny/filters", params={"layer": "stem.0"})
        other = await client.get("/v1/models/tiny/filters", params={"layer": "features.0"})
    assert first.status_code == 200 and first.json() == named.json()
    assert first.json()["layer"] == "stem.0" and first.json()["shape"] == [6, 3, 3, 3]
    assert png_pixels(first.json()["grid_png"]).ndim == 3
    assert other.status_code == 400 and "stem.0" in other.json()["error"]["message"]


async def test_an_explain_job_and_a_visualization_share_the_worker_in_turns(serve, noise_png):
    async with serve({"tiny": tiny_loaded()}, pass_chunk_size=2) as client:
        visualization = await client.post(
            "/v1/models/tiny/visualizations",
            json={"objective": {"kind": "channel", "layer": "features", "channel": 1}, "steps": 30},
        )
        explain = await client.post(
            "/v1/models/tiny/explain", params={"method": "score_cam"}, files={"image": noise_png}, headers=ASYNC
        )
        results = await asyncio.gather(
            wait_until_finished(client, visualization.headers["location"]),
            wait_until_finished(client, explain.headers["location"]),
        )
    assert [r["status"] for r in results] == ["succeeded", "succeeded"]
