"""Running one batch: a single hooked forward pass, the backward passes the methods need, then the methods.

Plan for a batch of jobs (any mix of methods, classes and layers):
1. One forward pass of the stacked images. Every layer some job names is captured by a forward hook; if any
   job asks for a gradient method, the first captured layer's output is detached into a leaf that requires
   grad, so the autograd graph starts there: parameters are frozen and the input needs no gradient.
2. Targets: each job's classes (explicit, or its top-k from the logits).
3. Gradients, only if needed: `torch.autograd.grad` of the logits w.r.t. the captured activations, one call
   per *round*, where round r holds the r-th class of every job. Rows do not interact in eval mode, so one
   call serves every image of the batch; k classes cost k backward passes through the head, not k forwards.
4. Each (method, layer) group is computed once for all its (image, class) targets.
"""

import time
from collections import defaultdict
from collections.abc import Sequence

import torch

from model_store import LoadedModel
from model_store.hooks import forward_hooks
from service.errors import MethodNotApplicable
from service.jobs import ExplainJob, JobResult, MapResult
from service.methods import LayerInputs, Method, Need


def run_batch(model: LoadedModel, jobs: Sequence[ExplainJob]) -> list[JobResult]:
    """Serve `jobs` with one forward pass; returns one result per job, in order."""
    started = time.perf_counter()
    images = torch.stack([job.image for job in jobs]).to(model.device, non_blocking=True)
    layers = sorted({job.layer for job in jobs if job.methods and job.layer is not None})
    needs_gradients = any(method.needs_gradients for job in jobs for method in job.methods)

    activations, logits = _forward(model, images, layers, needs_gradients)
    classes = [_target_classes(job, logits[i]) for i, job in enumerate(jobs)]
    gradients = _layer_gradients(jobs, classes, activations, logits) if needs_gradients else {}
    maps = _compute_maps(model, jobs, classes, activations, gradients)

    logits_cpu = logits.detach().float().cpu()
    elapsed_ms = (time.perf_counter() - started) * 1000
    return [
        JobResult(logits=logits_cpu[i], maps=tuple(maps[i]), batch_size=len(jobs), inference_ms=elapsed_ms)
        for i in range(len(jobs))
    ]


def _forward(
    model: LoadedModel, images: torch.Tensor, layers: list[str], needs_gradients: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(B, 3, H, W) -> captured activations {layer: (B, C, h, w)} and logits (B, K)."""
    captured: dict[str, torch.Tensor] = {}

    def capture(layer: str, output: torch.Tensor) -> torch.Tensor:
        if needs_gradients and not output.requires_grad:
            output = output.detach().requires_grad_()
        captured[layer] = output
        # Downstream layers get a copy, so in-place ops after the layer cannot change what was captured.
        return output.clone()

    mode = torch.enable_grad() if needs_gradients else torch.inference_mode()
    with forward_hooks(model.module, layers, capture), mode:
        logits = model.module(images)
    return captured, logits


def _target_classes(job: ExplainJob, logits: torch.Tensor) -> list[int]:
    """The job's explicit classes, or the indices of its top-k logits (K,)."""
    if job.classes is not None:
        return list(job.classes)
    return torch.topk(logits.detach(), k=min(job.top_k, logits.shape[0])).indices.tolist()


def _layer_gradients(
    jobs: Sequence[ExplainJob],
    classes: list[list[int]],
    activations: dict[str, torch.Tensor],
    logits: torch.Tensor,
) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
    """{(job index, class): {layer: (C, h, w) gradient of that class's logit}} for jobs with gradient methods."""
    wanting = [i for i, job in enumerate(jobs) if any(m.needs_gradients for m in job.methods)]
    layers = sorted({jobs[i].layer for i in wanting})
    inputs = [activations[layer] for layer in layers]
    rounds = max(len(classes[i]) for i in wanting)
    gradients: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for r in range(rounds):
        members = [i for i in wanting if len(classes[i]) > r]
        seed = torch.zeros_like(logits)
        for i in members:
            seed[i, classes[i][r]] = 1.0
        grads = torch.autograd.grad(logits, inputs, grad_outputs=seed, retain_graph=r < rounds - 1, allow_unused=True)
        for i in members:
            gradients[(i, classes[i][r])] = {
                layer: (g[i] if g is not None else torch.zeros_like(activations[layer][i]))
                for layer, g in zip(layers, grads, strict=True)
            }
    return gradients


def _compute_maps(
    model: LoadedModel,
    jobs: Sequence[ExplainJob],
    classes: list[list[int]],
    activations: dict[str, torch.Tensor],
    gradients: dict[tuple[int, int], dict[str, torch.Tensor]],
) -> list[list[MapResult]]:
    """Run each (method, layer) group once over all its targets; maps in each job's (method, class) order."""
    groups: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    methods: dict[str, Method] = {}
    for i, job in enumerate(jobs):
        for method in job.methods:
            methods[method.name] = method
            groups[(method.name, job.layer)].extend((i, c) for c in classes[i])

    computed: dict[tuple[str, int, int], torch.Tensor] = {}
    for (name, layer), targets in groups.items():
        method = methods[name]
        inputs = _layer_inputs(model, method, layer, targets, activations, gradients)
        with torch.no_grad():
            raw = torch.nan_to_num(method.compute(inputs).detach().float()).cpu()
        for (i, c), row in zip(targets, raw, strict=True):
            computed[(name, i, c)] = row

    return [
        [
            MapResult(method=m.name, class_index=c, layer=job.layer, map=computed[(m.name, i, c)])
            for m in job.methods
            for c in classes[i]
        ]
        for i, job in enumerate(jobs)
    ]


def _layer_inputs(
    model: LoadedModel,
    method: Method,
    layer: str,
    targets: list[tuple[int, int]],
    activations: dict[str, torch.Tensor],
    gradients: dict[tuple[int, int], dict[str, torch.Tensor]],
) -> LayerInputs:
    """Stack the rows of `targets` [(image index, class)] into (N, ...) tensors for `method`."""
    rows = torch.tensor([i for i, _ in targets], device=model.device)
    class_weights = None
    if Need.CLASSIFIER_WEIGHTS in method.needs:
        if layer != model.cam_layer:
            raise MethodNotApplicable(f"{method.name} needs the layer that feeds a GAP + linear head")
        class_weights = model.classifier_weight()[torch.tensor([c for _, c in targets], device=model.device)]
    stacked_gradients = None
    if method.needs_gradients:
        stacked_gradients = torch.stack([gradients[target][layer] for target in targets])
    return LayerInputs(
        activations=activations[layer].detach()[rows],
        gradients=stacked_gradients,
        class_weights=class_weights,
    )
