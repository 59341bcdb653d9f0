"""Long work never blocks: a request of many chunks runs a chunk at a time between the batches of cheap ones."""

import asyncio

import pytest

from tests.serve_tiny import SlowGapNet
from tests.tiny_models import prepare_tiny

pytestmark = pytest.mark.anyio
URL = "/v1/models/slow/explain"
# 64 occlusion patches of 4 px on the 32 px input: 64 chunks of one image at `pass_chunk_size=1`
LONG = {"method": "occlusion", "window": 4, "stride": 4}


def slow_model(forward_s: float):
    module = SlowGapNet(0.0)
    model = prepare_tiny("slow", module)
    module.forward_s = forward_s  # after the warm-up pass
    return {"slow": model}


async def long_tasks(client) -> float:
    text = (await client.get("/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith('explain_long_tasks{model="slow"}'))
    return float(line.split()[-1])


async def wait_until_running(client) -> None:
    for _ in range(200):
        if await long_tasks(client) == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the long request never started")


async def test_a_cheap_request_is_answered_while_a_long_one_still_runs(serve, noise_png):
    async with serve(slow_model(0.05), pass_chunk_size=1) as client:
        long = asyncio.create_task(client.post(URL, params=LONG, files={"image": noise_png}))
        await wait_until_running(client)
        for _ in range(3):
            cheap = await client.post(URL, params={"method": "grad_cam"}, files={"image": noise_png})
            assert cheap.status_code == 200 and not long.done()
        answer = await long
        assert answer.status_code == 200, answer.text
        assert answer.json()["explanations"][0]["map"]["shape"] == [32, 32]
        assert await long_tasks(client) == 0


async def test_long_work_past_its_deadline_is_504_and_stops(serve, noise_png):
    models = slow_model(0.05)
    module = models["slow"].module
    async with serve(models, pass_chunk_size=1, request_timeout_s=0.5) as client:
        answer = await client.post(URL, params=LONG, files={"image": noise_png})
        assert answer.status_code == 504
        await asyncio.sleep(0.3)
        calls = module.calls
        await asyncio.sleep(0.3)
        assert module.calls == calls and await long_tasks(client) == 0  # no chunk ran after the deadline


async def test_more_long_requests_than_the_bound_are_refused_at_once(serve, noise_png):
    async with serve(slow_model(0.05), pass_chunk_size=1, max_long_tasks=1) as client:
        first = asyncio.create_task(client.post(URL, params=LONG, files={"image": noise_png}))
        await wait_until_running(client)
        refused = await client.post(URL, params=LONG, files={"image": noise_png})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_jobs"
        assert "retry-after" in refused.headers
        assert (await first).status_code == 200
