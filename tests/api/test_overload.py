"""Overload against a real uvicorn process: 64 clients in a closed loop, far above what a slow tiny model can
serve. The bounded queue keeps the latency of accepted requests bounded, and the rest are refused with fast
503s, not left to time out."""

import asyncio

import pytest

from tests.load import closed_loop, percentile
from tests.real_server import real_server

pytestmark = pytest.mark.slow

CLIENTS = 64
MAX_QUEUE = 8
MAX_BATCH = 4
FORWARD_S = 0.5  # the "device" time of one batch: capacity is about 8 requests/s
REQUEST_TIMEOUT_S = 10.0


def test_accepted_latency_stays_bounded_and_the_rest_are_fast_503s(noise_png):
    settings = {
        "max_queue": str(MAX_QUEUE),
        "max_batch_size": str(MAX_BATCH),
        "max_batch_delay_ms": "5",
        "request_timeout_s": str(REQUEST_TIMEOUT_S),
        "log_level": "warning",
    }
    with real_server(settings, forward_s=FORWARD_S) as server:
        result = asyncio.run(
            closed_loop(
                server.port,
                "/v1/models/tiny/explain?method=cam",
                noise_png,
                "image/png",
                clients=CLIENTS,
                duration_s=5.0,
                timeout_s=2 * REQUEST_TIMEOUT_S,
            )
        )
        metrics = server.metrics()
        assert server.terminate(timeout_s=15) == 0
    batches = metrics['explain_batch_size_count{model="tiny"}']
    items = metrics['explain_batch_size_sum{model="tiny"}']
    batch_s = metrics['explain_inference_seconds_sum{model="tiny"}'] / batches
    # a request finds at most MAX_QUEUE ahead of it (MAX_QUEUE / MAX_BATCH batches), waits for the batch in
    # hand and then runs in its own: that many batch times, plus HTTP, decoding and encoding
    bound_s = (MAX_QUEUE / MAX_BATCH + 2) * batch_s
    accepted, refused = result.latencies.get(200, []), result.latencies.get(503, [])
    print(
        f"\n{CLIENTS} clients, max_queue {MAX_QUEUE}, max_batch_size {MAX_BATCH}: {result.summary()}\n"
        f"  batches {batches:.0f}, {items / batches:.2f} items each, "
        f"{batch_s * 1000:.0f} ms each; bound (queue/batch + 2) x batch = {bound_s * 1000:.0f} ms"
    )
    assert set(result.latencies) == {200, 503}, result.summary()  # no other 5xx, no timeouts, no resets
    assert set(result.error_codes) == {"queue_full"}
    assert len(accepted) >= 0.5 * 5.0 / batch_s * MAX_BATCH  # the model was kept busy
    assert len(refused) > 2 * len(accepted)  # far above capacity
    assert percentile(accepted, 99) < REQUEST_TIMEOUT_S / 2
    assert percentile(accepted, 99) < 1.5 * bound_s
    assert max(accepted) < 2 * bound_s
    assert percentile(refused, 99) < percentile(accepted, 99) / 2
    assert percentile(refused, 50) < batch_s
