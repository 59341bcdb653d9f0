"""The batch size a model serves fastest, from the time per image measured at each batch size when it was warmed."""

import asyncio
from dataclasses import replace

import pytest

from tests.tiny_models import tiny_loaded

BUILTIN_ON_TWO_CORES = {1: 16.0, 2: 12.0, 4: 11.0, 8: 17.0, 16: 24.0}  # measured, ms per image


@pytest.mark.parametrize(
    ("timings", "limit", "expected"),
    [
        (BUILTIN_ON_TWO_CORES, 16, 4),
        ({1: 16.0, 2: 12.0, 4: 14.5, 8: 17.0}, 16, 4),  # 4 is within noise of the best (2): the larger
        ({1: 16.0, 2: 12.0, 4: 15.5, 8: 17.0}, 16, 2),  # 4 is clearly slower than 2
        (BUILTIN_ON_TWO_CORES, 2, 2),  # never above the limit
        ({1: 4.0, 2: 2.0, 4: 1.1, 8: 0.6, 16: 0.4}, 64, 64),  # still faster at the largest size timed: the limit
        ({1: 0.20, 2: 0.12, 4: 0.50, 8: 0.30, 16: 0.45}, 16, 16),  # sub-millisecond differences are noise
    ],
)
def test_the_preferred_batch_size_is_the_largest_as_fast_per_image_as_the_best(timings, limit, expected):
    model = replace(tiny_loaded(), forward_ms_by_batch=timings)
    assert model.preferred_batch_size(limit) == expected


def test_warming_times_batches_of_growing_size():
    model = tiny_loaded()
    assert list(model.forward_ms_by_batch) == [1, 2, 4, 8, 16]
    assert all(0 < ms < 1000 for ms in model.forward_ms_by_batch.values())
    assert model.forward_ms_per_image == min(model.forward_ms_by_batch.values())


@pytest.mark.anyio
async def test_the_worker_forms_batches_of_the_preferred_size(serve, noise_png):
    model = replace(tiny_loaded(), forward_ms_by_batch=BUILTIN_ON_TWO_CORES)
    async with serve({"tiny": model}, max_batch_size=16, max_batch_delay_ms=300) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/models/tiny/explain", files={"image": noise_png}) for _ in range(12))
        )
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200] * 12
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("explain_batch_size"))
    batches = float(samples['explain_batch_size_count{model="tiny"}'])
    assert float(samples['explain_batch_size_sum{model="tiny"}']) == 12
    assert float(samples['explain_batch_size_bucket{le="4.0",model="tiny"}']) == batches  # none above 4
    assert batches < 12  # and batched
    assert 'explain_batch_limit{model="tiny"} 4.0' in metrics
