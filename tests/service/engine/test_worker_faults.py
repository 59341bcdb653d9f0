"""Faults stay small: a failing method, device out-of-memory and a dead worker, with injected faults."""

import asyncio
import weakref

import pytest
import torch

from service.methods import METHODS
from tests.tiny_models import TinyGapNet, prepare_tiny, tiny_loaded

pytestmark = pytest.mark.anyio


class FaultyNet(TinyGapNet):
    """Raises `fault` on a batch larger than one (`when="batch"`) or on a bright input (`when="bright"`)."""

    def __init__(self, fault: type[Exception], when: str) -> None:
        super().__init__()
        self.fault, self.when, self.armed = fault, when, False
        self.batch_sizes: list[int] = []
        self.failed_inputs: list[weakref.ref] = []  # the batches it failed on
        self.failed_inputs_alive: list[bool] = []  # at each later pass: is any failed batch still referenced?

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            self.batch_sizes.append(len(x))
            self.failed_inputs_alive.append(any(ref() is not None for ref in self.failed_inputs))
            if (self.when == "batch" and len(x) > 1) or (
                self.when == "bright" and bool((x.mean(dim=(1, 2, 3)) > 1.5).any())
            ):
                self.failed_inputs.append(weakref.ref(x))
                raise self.fault("injected fault")
        return super().forward(x)


def faulty(fault: type[Exception], when: str):
    torch.manual_seed(0)
    module = FaultyNet(fault, when)
    model = prepare_tiny("faulty", module)
    module.armed = True
    return {"faulty": model}, module


def png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    from tests.conftest import image_bytes

    return image_bytes(Image.new("RGB", (32, 32), color), "PNG")


URL = "/v1/models/faulty/explain"


async def post_together(client, url, bodies: list[bytes], params=None):
    return await asyncio.gather(*(client.post(url, params=params, files={"image": body}) for body in bodies))


async def test_a_failing_method_fails_only_the_requests_that_asked_for_it(serve, monkeypatch, noise_png):
    def broken(inputs):
        raise RuntimeError("injected method failure")

    monkeypatch.setattr(METHODS["xgrad_cam"], "compute", broken)
    models = {"tiny": tiny_loaded()}
    # The widest window: under load (CI beside other work) the three decodes can take longer than 300 ms.
    async with serve(models, max_batch_delay_ms=1000) as client:
        url = "/v1/models/tiny/explain"
        bad, good, also_good = await asyncio.gather(
            client.post(url, params={"method": "xgrad_cam"}, files={"image": noise_png}),
            client.post(url, params={"method": "grad_cam"}, files={"image": noise_png}),
            client.post(url, params={"method": "saliency"}, files={"image": noise_png}),
        )
        metrics = (await client.get("/metrics")).text
    assert bad.status_code == 500 and bad.json()["error"]["code"] == "method_failed"
    assert good.status_code == 200 and also_good.status_code == 200
    assert 'explain_batch_size_count{model="tiny"} 1.0' in metrics  # the three shared one batch


async def test_out_of_memory_splits_the_batch_and_retries(serve):
    models, module = faulty(torch.OutOfMemoryError, "batch")
    async with serve(models, max_batch_delay_ms=300) as client:
        responses = await post_together(client, URL, [png((i * 40, 0, 0)) for i in range(4)])
    assert [r.status_code for r in responses] == [200] * 4
    # every batch of more than one failed and was halved; each job finally ran alone, once
    assert module.batch_sizes.count(1) == 4 and max(module.batch_sizes) > 1
    # nothing of a failed batch is referenced while its halves run (the retry has the device's memory to itself)
    assert module.failed_inputs and not any(module.failed_inputs_alive)


async def test_an_item_that_fails_alone_gets_a_retryable_503_and_the_rest_200(serve):
    models, module = faulty(torch.OutOfMemoryError, "bright")
    async with serve(models, max_batch_delay_ms=300) as client:
        responses = await post_together(client, URL, [png((0, 0, 0)), png((255, 255, 255)), png((10, 10, 10))])
        assert (await client.get("/readyz")).status_code == 200
    assert [r.status_code for r in responses] == [200, 503, 200]
    assert responses[1].json()["error"]["code"] == "device_out_of_memory" and "retry-after" in responses[1].headers


async def test_an_unrecoverable_device_error_stops_the_worker_and_fails_fast():
    import httpx

    from service.core.settings import Settings
    from service.http.app import create_app

    models, _ = faulty(torch.AcceleratorError, "bright")
    app = create_app(Settings(models=["faulty"]), models=models)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.post(URL, files={"image": png((0, 0, 0))})).status_code == 200
            dying = await client.post(URL, files={"image": png((255, 255, 255))})
            assert dying.status_code == 503 and dying.json()["error"]["code"] == "worker_stopped"
            after = await client.post(URL, files={"image": png((0, 0, 0))})
            assert after.status_code == 503 and after.json()["error"]["code"] == "worker_stopped"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
        assert isinstance(app.state.runtime.fatal_error, torch.AcceleratorError)  # the server exits on it


@pytest.mark.slow
def test_the_process_exits_non_zero_after_an_unrecoverable_device_error():
    """With a real process: the orchestrator sees the exit status and restarts the service."""
    import httpx

    from service.core.server import EXIT_DEVICE_ERROR
    from tests.real_server import real_server

    with real_server({}, device_fault_on_white=True) as server:
        url = f"{server.url}/v1/models/tiny/explain"
        assert httpx.post(url, files={"image": png((0, 0, 0))}, timeout=30).status_code == 200
        dying = httpx.post(url, files={"image": png((255, 255, 255))}, timeout=30)
        assert dying.status_code == 503 and dying.json()["error"]["code"] == "worker_stopped"
        assert server.process.wait(timeout=30) == EXIT_DEVICE_ERROR


@pytest.mark.parametrize("hand_over", ["submit", "visualize", "call"])
def test_work_handed_to_a_worker_that_died_meanwhile_fails_at_once(monkeypatch, hand_over):
    """The worker died between the liveness check and the hand-over: the work fails with `worker_stopped` at once
    instead of waiting for a thread that is gone."""
    import time

    from service.core.errors import ServiceUnavailable
    from service.core.prometheus import Metrics
    from service.engine.visualizations import VisualizationOrder
    from service.engine.work import ExplainJob
    from service.engine.worker import ModelWorker
    from service.visualization import ClassObjective, VisualizationSpec

    worker = ModelWorker("tiny", tiny_loaded, Metrics(), max_batch_size=4, max_batch_delay_s=0.0, max_queue=8)
    worker.start()
    worker.wait_until_loaded()
    worker.stop()
    assert not worker.alive
    monkeypatch.setattr(ModelWorker, "alive", property(lambda self: True))  # it passed the check, then died
    long = dict(extra_passes=worker.pass_chunk_size + 1, methods=(METHODS["occlusion"],))
    if hand_over == "submit":
        job = ExplainJob(
            torch.zeros(3, 32, 32),
            classes=None,
            top_k=1,
            layer=None,
            deadline=time.monotonic() + 30,
            request_id="race",
            **long,
        )
        worker.submit(job)
        future = job.future
    elif hand_over == "visualize":
        order = VisualizationOrder(VisualizationSpec(ClassObjective(1), steps=5, size=(32, 32)))
        worker.visualize(order)
        future = order.future
    else:
        future = worker.call(lambda model: 1)
    error = future.exception(timeout=5)
    assert isinstance(error, ServiceUnavailable) and error.code == "worker_stopped"


def test_out_of_memory_while_a_visualization_starts_fails_that_visualization_only(monkeypatch):
    from service.core.errors import ServiceUnavailable
    from service.engine import visualizations
    from service.engine.visualizations import VisualizationBatch, VisualizationOrder
    from service.visualization import ClassObjective, VisualizationSpec

    class OutOfMemoryOnLargeCanvas(visualizations.Visualization):
        def __init__(self, spec, model):  # type: ignore[no-untyped-def]
            if spec.size == (64, 64):
                raise torch.OutOfMemoryError("injected: the canvas does not fit")
            super().__init__(spec, model)

    monkeypatch.setattr(visualizations, "Visualization", OutOfMemoryOnLargeCanvas)
    batch = VisualizationBatch(tiny_loaded(), schedule=lambda task: None)
    running = VisualizationOrder(VisualizationSpec(ClassObjective(1), steps=3, size=(32, 32)))
    batch.add(running)
    batch.step()
    too_big = VisualizationOrder(VisualizationSpec(ClassObjective(1), steps=3, size=(64, 64)))
    batch.add(too_big)
    while not batch.step():
        pass
    error = too_big.future.exception(timeout=0)
    assert isinstance(error, ServiceUnavailable) and error.code == "device_out_of_memory"
    assert running.future.result(timeout=0).image.shape == (3, 32, 32)


def test_a_visualization_past_its_deadline_stops_with_a_timeout():
    import time

    from service.core.errors import DeadlineExceeded
    from service.engine.visualizations import VisualizationBatch, VisualizationOrder
    from service.visualization import ClassObjective, VisualizationSpec

    batch = VisualizationBatch(tiny_loaded(), schedule=lambda task: None)
    order = VisualizationOrder(VisualizationSpec(ClassObjective(1), steps=1000), deadline=time.monotonic() + 0.2)
    batch.add(order)
    started = time.monotonic()
    while not batch.step():
        assert time.monotonic() - started < 30
    assert isinstance(order.future.exception(timeout=0), DeadlineExceeded)


def test_a_key_at_its_share_of_the_queue_leaves_the_others_theirs():
    import time
    from concurrent.futures import Future

    from service.core.errors import ServiceUnavailable
    from service.core.prometheus import Metrics
    from service.engine.work import ExplainJob
    from service.engine.worker import ModelWorker

    worker = ModelWorker(
        "tiny", tiny_loaded, Metrics(), max_batch_size=4, max_batch_delay_s=0.0, max_queue=8, max_queue_per_owner=2
    )
    worker.start()
    worker.wait_until_loaded()
    blocker: Future = worker.call(lambda model: time.sleep(0.5))  # the worker is busy: jobs stay queued

    def job(owner: str) -> ExplainJob:
        return ExplainJob(
            torch.zeros(3, 32, 32), (), None, 1, None, time.monotonic() + 30, request_id=owner, owner=owner
        )

    try:
        held = [job("a"), job("a")]
        for queued in held:
            worker.submit(queued)
        with pytest.raises(ServiceUnavailable, match="its share of the queue") as refused:
            worker.submit(job("a"))
        assert refused.value.code == "queue_full"
        theirs = job("b")
        worker.submit(theirs)
        blocker.result(timeout=10)
        for done in [*held, theirs]:
            done.future.result(timeout=10)
        worker.submit(job("a"))  # its places came back once its jobs were answered
    finally:
        worker.stop()
