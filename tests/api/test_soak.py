"""Soak against a real uvicorn process: thousands of explanations (every method, maps and PNG overlays) leave the
server's resident memory flat and no hook, gradient or training flag on the warm model."""

import asyncio
import json

import pytest

from tests.load import closed_loop
from tests.real_server import real_server

pytestmark = pytest.mark.slow

WARM_UP = 600
ROUNDS = 4
PER_ROUND = 600


def test_thousands_of_requests_leave_memory_flat_and_the_model_untouched(noise_png, tmp_path):
    report = tmp_path / "model_state.json"
    path = "/v1/models/tiny/explain?method=cam,grad_cam,grad_cam_pp"
    with real_server({"max_batch_size": "16", "log_level": "warning"}, report=report) as server:

        def load(requests: int) -> None:
            result = asyncio.run(
                closed_loop(
                    server.port,
                    path,
                    noise_png,
                    "image/png",
                    clients=8,
                    duration_s=60,
                    timeout_s=30,
                    max_requests=requests,
                )
            )
            assert result.count(200) == result.total == requests, result.summary()

        load(WARM_UP)
        baseline_kib = server.rss_kib()
        samples_kib = []
        for _ in range(ROUNDS):
            load(PER_ROUND)
            samples_kib.append(server.rss_kib())
        metrics = server.metrics()
        assert server.terminate(timeout_s=15) == 0
    served = metrics['explain_batch_size_sum{model="tiny"}']
    growth = [(s - baseline_kib) / baseline_kib for s in samples_kib]
    print(
        f"\n{served:.0f} explanations; VmRSS after warm-up {baseline_kib / 1024:.1f} MiB, after each further "
        f"{PER_ROUND}: {[round(s / 1024, 1) for s in samples_kib]} MiB ({max(growth):+.2%} at most, "
        f"{(samples_kib[-1] - baseline_kib) / (ROUNDS * PER_ROUND) * 1024:.0f} B per request)"
    )
    assert served == WARM_UP + ROUNDS * PER_ROUND
    assert max(growth) < 0.05
    per_request_kib = (samples_kib[-1] - baseline_kib) / (ROUNDS * PER_ROUND)
    assert per_request_kib < 4  # keeping even one 3x32x32 input tensor (12 KiB) per request would fail this
    assert json.loads(report.read_text()) == {"hooks": 0, "training": False, "grads": 0, "requires_grad": 0}
