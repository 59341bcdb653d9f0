"""Against a real `python -m service` process (uvicorn, the built-in model): 32 concurrent posts, batched."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.real_server import real_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with real_server({"max_batch_delay_ms": "20"}, module="service") as running:
        yield running.url


def test_32_concurrent_posts_are_all_answered_in_shared_batches(server, cat_jpeg):
    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/models/efficientnet_lite0/explain",
                        params={"method": ["cam", "grad_cam"], "top_k": 1 + i % 3},
                        files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
                    )
                    for i in range(32)
                )
            )

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [200] * 32
    assert all(r.json()["top_classes"][0]["index"] in range(281, 286) for r in responses)
    assert [len(r.json()["explanations"]) for r in responses] == [2 * (1 + i % 3) for i in range(32)]
    metrics = httpx.get(f"{server}/metrics").text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("explain_batch_size")
    }
    jobs = values['explain_batch_size_sum{model="efficientnet_lite0"}']
    batches = values['explain_batch_size_count{model="efficientnet_lite0"}']
    assert jobs == 32 and batches < 32, (jobs, batches)
    assert values['explain_batch_size_bucket{le="1.0",model="efficientnet_lite0"}'] < batches  # some batch > 1
