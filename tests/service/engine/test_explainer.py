"""The batched pass: one forward per batch, batch-independent answers, and a warm model left untouched."""

import time

import torch

from service.engine.explainer import batch_steps, run_batch
from service.engine.work import ExplainJob
from service.methods import METHODS
from tests.tiny_models import TinyFlatNet, tiny_loaded

ALL = tuple(m for m in METHODS.values() if m.not_applicable_to(tiny_loaded().module) is None)
"""Every method that applies to the tiny CNN (not the ones that read a transformer's attention)."""
SHARED_PASS = tuple(
    METHODS[name]
    for name in (
        "cam",
        "grad_cam",
        "grad_cam_pp",
        "xgrad_cam",
        "layer_cam",
        "hires_cam",
        "eigen_cam",
        "saliency",
        "gradient_x_input",
    )
)


def job(image: torch.Tensor, methods=ALL, classes=None, top_k=1, layer="features") -> ExplainJob:
    return ExplainJob(image, tuple(methods), classes, top_k, layer, time.monotonic() + 60, "test")


def images(n: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 32, 32, generator=generator) for _ in range(n)]


def test_batched_answers_equal_answers_alone():
    model = tiny_loaded()
    xs = images(4)
    jobs = [
        job(xs[0], classes=(0, 3)),
        job(xs[1], methods=(METHODS["grad_cam"], METHODS["saliency"]), top_k=3),
        job(xs[2], methods=(METHODS["grad_cam_pp"], METHODS["cam"], METHODS["smoothgrad"]), classes=(4,)),
        job(
            xs[3],
            methods=(METHODS["grad_cam"], METHODS["score_cam"], METHODS["gradient_x_input"]),
            classes=(1,),
            layer="stem",
        ),
    ]
    together = run_batch(model, jobs)
    for j, batched in zip(jobs, together, strict=True):
        (alone,) = run_batch(model, [j])
        torch.testing.assert_close(batched.logits, alone.logits, atol=1e-4, rtol=1e-4)
        assert [(m.method, m.class_index, m.layer) for m in batched.maps] == [
            (m.method, m.class_index, m.layer) for m in alone.maps
        ]
        for a, b in zip(batched.maps, alone.maps, strict=True):
            torch.testing.assert_close(a.map, b.map, atol=1e-4, rtol=1e-4)


def test_maps_come_in_method_then_class_order_with_top_k_classes():
    model = tiny_loaded()
    (result,) = run_batch(model, [job(images(1)[0], top_k=2)])
    expected_classes = torch.topk(result.logits, 2).indices.tolist()
    assert [(m.method, m.class_index) for m in result.maps] == [(m.name, c) for m in ALL for c in expected_classes]
    for m in result.maps:
        at_input = METHODS[m.method].input_resolution
        assert m.map.shape == ((32, 32) if at_input else (8, 8)), m.method
        assert m.layer == (None if not METHODS[m.method].uses_layer else "features"), m.method
        assert torch.isfinite(m.map).all() and m.map.abs().sum() > 0, m.method


def count_forward_calls(model, jobs) -> int:
    calls = []
    handle = model.module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        run_batch(model, jobs)
    finally:
        handle.remove()
    return len(calls)


def test_one_forward_pass_serves_every_shared_pass_method_and_class_of_the_batch():
    model = tiny_loaded()
    assert count_forward_calls(model, [job(x, methods=SHARED_PASS, top_k=3) for x in images(3)]) == 1


def test_guided_and_deconvnet_take_one_pass_each_for_the_whole_batch():
    model = tiny_loaded()
    rectified = (METHODS["guided_backprop"], METHODS["deconvnet"], METHODS["guided_grad_cam"])
    assert count_forward_calls(model, [job(x, methods=rectified, top_k=2) for x in images(3)]) == 3


def test_multi_pass_methods_run_in_chunks():
    model = tiny_loaded()
    calls = count_forward_calls(model, [job(images(1)[0], methods=(METHODS["score_cam"],))])
    assert calls == 1 + 1  # the shared pass, then 8 channels in one chunk of 32


def test_between_chunks_the_model_is_free_and_grad_mode_is_the_caller_s():
    """Each yield of `batch_steps` comes after one chunk of extra passes, with no hook left on the model and the
    caller's grad mode in force, so that the worker may serve other batches in between."""
    model = tiny_loaded()
    chunk_size = 3  # score_cam: 8 channels -> chunks of 3, 3, 2; occlusion at 32 px, window 32: 1 patch
    jobs = [job(images(1)[0], methods=(METHODS["score_cam"], METHODS["grad_cam"], METHODS["occlusion"]))]
    steps = batch_steps(model, jobs, chunk_size=chunk_size)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            (result,) = done.value
            break
        pauses += 1
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.module.modules())
    assert pauses == 3 + 1
    (alone,) = run_batch(model, jobs)
    for a, b in zip(result.maps, alone.maps, strict=True):
        torch.testing.assert_close(a.map, b.map)


def test_gradients_stop_at_the_target_layer():
    """No gradient reaches the layers before the target: the stem's output never requires grad."""
    model = tiny_loaded()
    seen = []
    handle = model.module.stem.register_forward_hook(lambda _m, _i, out: seen.append(out.requires_grad))
    try:
        run_batch(model, [job(images(1)[0], methods=(METHODS["grad_cam"],))])
    finally:
        handle.remove()
    assert seen == [False]


def test_the_warm_model_is_untouched_by_requests():
    model = tiny_loaded()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    run_batch(model, [job(x, top_k=2) for x in images(2)])
    run_batch(model, [job(images(1)[0], methods=(METHODS["grad_cam"],), layer="stem")])
    for module in model.module.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert module.training is False
    for name, parameter in model.module.named_parameters():
        assert parameter.grad is None and parameter.requires_grad is False, name
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cam_is_not_applicable_to_a_flatten_head():
    model = tiny_loaded("flat", TinyFlatNet)
    assert model.cam_layer is None
    tiny_gap = tiny_loaded()
    assert tiny_gap.cam_layer == "features"
