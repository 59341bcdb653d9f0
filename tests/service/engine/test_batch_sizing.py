"""The batch size corrected while serving: trials of a neighbouring size, judged by the worker's cycle per image.

The worker is simulated: each batch takes the limit's cost per image (ms) times its images, and `clients`
requests are waiting (a closed loop of that many clients fills batches of up to that many).
"""

import logging
from dataclasses import replace

import pytest

from service.engine.batch_sizing import BLOCK_BATCHES, IDLE_S, TRIAL_GAP, BatchSizer
from tests.model_store.test_batch_timing import BUILTIN_ON_TWO_CORES
from tests.tiny_models import tiny_loaded

BUILTIN_SERVED = {1: 48.0, 2: 36.0, 4: 28.0, 8: 33.0, 16: 40.0}  # ms per image of a cycle: the shape on two cores


def serve(sizer: BatchSizer, cost: dict[int, float], batches: int, clients: int = 64) -> list[int]:
    """Run `batches` batches; returns the size limit of each."""
    limits = []
    for _ in range(batches):
        limit = sizer.next_limit()
        images = min(limit, clients)
        sizer.record(limit, images, cost[limit] * images / 1000)
        limits.append(limit)
    return limits


@pytest.mark.parametrize("start", [1, 2, 16])
def test_a_worker_that_started_at_a_wrong_size_climbs_to_the_fastest(start):
    sizer = BatchSizer(start, 16)
    serve(sizer, BUILTIN_SERVED, 600)
    assert sizer.size == 4


def test_at_the_fastest_size_it_stays_and_tries_the_others_ever_less_often():
    sizer = BatchSizer(4, 16)
    limits = serve(sizer, BUILTIN_SERVED, 3000)
    assert sizer.size == 4
    assert set(limits) == {2, 4, 8}  # both neighbours tried
    assert limits[:TRIAL_GAP] == [4] * TRIAL_GAP
    late = limits[-1000:]
    assert sum(limit != 4 for limit in late) < len(late) / 15  # half a trial in every MAX_TRIAL_GAP batches or so


@pytest.mark.parametrize(("slowed_blocks", "moves"), [(1, False), (2, True)])
def test_a_move_needs_every_round_of_the_trial(slowed_blocks, moves):
    """A burst of load on the machine during one block of the current size does not move the worker."""
    sizer = BatchSizer(4, 16)
    serve(sizer, BUILTIN_SERVED, TRIAL_GAP)
    assert sizer.next_limit() == 8  # the trial begins: blocks of 8, 4, 8, 4
    batches_of_4 = 0
    for _ in range(4 * BLOCK_BATCHES):
        limit = sizer.next_limit()
        slowed = limit == 4 and batches_of_4 < slowed_blocks * BLOCK_BATCHES
        batches_of_4 += limit == 4
        sizer.record(limit, limit, BUILTIN_SERVED[limit] * (3 if slowed else 1) * limit / 1000)
    assert sizer.size == (8 if moves else 4)
    assert sizer.next_limit() == sizer.size  # the trial is over


def test_sizes_never_exceed_the_limit_and_include_it():
    sizer = BatchSizer(16, 12)
    assert sizer.ladder == [1, 2, 4, 8, 12]
    cost = {1: 50.0, 2: 40.0, 4: 30.0, 8: 20.0, 12: 10.0}  # a GPU: the larger the faster
    assert set(serve(sizer, cost, 500)) <= set(sizer.ladder)
    assert sizer.size == 12


def test_no_trial_while_requests_come_one_at_a_time():
    sizer = BatchSizer(4, 16)
    assert serve(sizer, BUILTIN_SERVED, 500, clients=1) == [4] * 500
    assert sizer.size == 4


def test_sizes_that_the_load_never_fills_serve_alike_and_the_size_stays():
    sizer = BatchSizer(16, 16)
    cost = {4: 40.0, 8: 30.0, 16: 30.0}  # 8 clients: batches of 8 at either limit
    assert set(serve(sizer, cost, 400, clients=8)) == {8, 16}
    assert sizer.size == 16


def test_a_trial_is_dropped_when_the_load_stops():
    sizer = BatchSizer(4, 16)
    serve(sizer, BUILTIN_SERVED, TRIAL_GAP + 3)
    assert sizer.next_limit() == 8
    sizer.idle(IDLE_S / 10)  # a gap between the batches of a closed loop: the trial goes on
    assert sizer.next_limit() == 8
    sizer.idle(IDLE_S)
    assert sizer.next_limit() == 4
    assert serve(sizer, BUILTIN_SERVED, TRIAL_GAP)[-1] == 4  # the count to the next trial starts again


@pytest.mark.anyio
async def test_the_worker_times_its_batches_and_reports_a_new_size(serve, noise_png, monkeypatch, caplog):
    recorded = []

    def moved_to_2(sizer: BatchSizer, limit: int, images: int, cycle_s: float) -> bool:
        recorded.append((limit, images, cycle_s))
        sizer.size = 2
        return True

    monkeypatch.setattr(BatchSizer, "record", moved_to_2)
    caplog.set_level(logging.INFO, logger="service.engine.worker")
    model = replace(tiny_loaded(), forward_ms_by_batch=BUILTIN_ON_TWO_CORES)
    async with serve({"tiny": model}, max_batch_size=16) as client:
        response = await client.post("/v1/models/tiny/explain", files={"image": noise_png})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200
    [(limit, images, cycle_s)] = recorded
    assert (limit, images) == (4, 1)  # the warm-up's choice for this curve, one request
    assert 0 < cycle_s < 60
    assert 'explain_batch_limit{model="tiny"} 2.0' in metrics
    assert "batches of up to 2 images from now on, served faster than batches of 4" in caplog.text
