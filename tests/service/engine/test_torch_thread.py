"""Torch runs on one thread per model: the worker loads, warms and serves its model, and the CPU pool (decoding,
overlays, answers) runs no torch operation, only reads the worker's CPU tensors as arrays."""

import asyncio
import threading
import time

import pytest
import torch
from torch.overrides import TorchFunctionMode

from api_schemas import ExplainParameters
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.engine.explainer import run_batch
from service.engine.work import ExplainJob
from service.http.parameters import plan_explanation
from service.http.responses import build_explain, build_predict
from service.http.runtime import ServiceRuntime
from service.imaging.decoding import decode_image
from tests.tiny_models import TinyGapNet, prepare_tiny, tiny_loaded

# Reading a CPU tensor's memory as a numpy array or a list starts no thread team.
READING_ONLY = {"__array__", "numpy", "tolist", "__len__", "__iter__", "__getitem__", "__format__", "shape", "dim"}


class ThreadRecordingNet(TinyGapNet):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.get_ident())
        return super().forward(x)


def test_the_worker_thread_loads_warms_and_serves_its_model():
    loaded_on: list[int] = []
    modules: list[ThreadRecordingNet] = []

    def load():
        loaded_on.append(threading.get_ident())
        torch.manual_seed(0)
        modules.append(ThreadRecordingNet())
        return prepare_tiny("tiny", modules[0])  # its warm-up pass runs here too

    runtime = ServiceRuntime(Settings(models=["tiny"]), {"tiny": load}, Metrics())
    runtime.start()
    try:
        worker = runtime.worker("tiny")
        for top_k in (1, 3):
            job = ExplainJob(torch.zeros(3, 32, 32), (), None, top_k, None, time.monotonic() + 30, "thread")
            asyncio.run(runtime.execute(worker, job))
        assert loaded_on == [worker._thread.ident] and modules[0].threads == {worker._thread.ident}
    finally:
        runtime.stop()


def test_a_model_that_fails_to_load_fails_the_start():
    def load():
        raise ValueError("no such weights")

    runtime = ServiceRuntime(Settings(models=["broken"]), {"broken": load}, Metrics())
    with pytest.raises(ValueError, match="no such weights"):
        runtime.start()
    assert not runtime.ready


class TorchCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.add(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("overlay_format", ["png", "jpeg", "webp"])
def test_decoding_and_answers_run_no_torch_operation(overlay_format, cat_jpeg):
    model = tiny_loaded()
    params = ExplainParameters.model_validate(
        {"method": ["grad_cam", "saliency"], "top_k": 2, "bbox": True, "overlay_format": overlay_format}
    )
    plan = plan_explanation(params, model, 10, 512, 16, 512, 64)
    calls = TorchCalls()
    with calls:
        image = decode_image(cat_jpeg, model.preprocessing, 10**7, 512)
    job = ExplainJob(image.tensor, plan.methods, None, plan.top_k, plan.layer, time.monotonic() + 30, "pool")
    (result,) = run_batch(model, [job])
    with calls:
        answer = build_explain(model, image, result, plan, 5, {})
        build_predict(model, image, result, 5, None, 512, {})
    assert calls.names <= READING_ONLY, calls.names - READING_ONLY
    assert len(answer.explanations) == 4 and all(getattr(e, f"overlay_{overlay_format}") for e in answer.explanations)
