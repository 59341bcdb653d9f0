"""Running one batch: shared passes planned from the methods' declared needs, then the methods.

Plan for a batch of jobs (any mix of methods, classes, layers and options):
1. One shared forward pass of the stacked images. Every layer some job names is captured by a forward hook.
   If a job needs layer gradients, the first captured layer's output becomes a leaf that requires grad, so
   the graph starts there (parameters are frozen); if a job needs input gradients, the input requires grad
   instead, and the same graph serves both.
2. Targets: each job's classes (explicit, or its top-k from the logits; a segmentation model's classes with the
   most pixels).
3. Gradients from that graph with `torch.autograd.grad`, one call per *round*, where round r holds the r-th
   class of every job that needs them: rows do not interact in eval mode, so one call serves the batch, and
   k classes cost k backward passes, not k forward passes. Layer gradients stop at the layer. The score
   differentiated is the class's logit, a segmentation class's logits summed over the pixels predicted as that
   class (or over the mask the request sent), an embedding's cosine similarity to its reference image, or a
   detection's box score (`service.engine.detections`).
4. Guided backprop and deconvnet: one forward + backward pass each, over the images that need it, with the
   rectifiers' backward rule changed for that pass only.
5. Each (method, layer, options) group is computed once for all its targets; multi-pass methods run their
   extra passes through a `PassRunner`, in chunks (for a model that is not a classifier, one image at a time,
   the model's output mapped to its targets' scores: `service.engine.task_scores`).
6. Optional faithfulness evaluation of each map (batched extra passes).

The whole plan is one generator (`batch_steps`) that yields after each chunk of extra passes, so that the
worker can interleave long work with other batches; `run_batch` runs it to the end at once.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import torch

from model_store import LoadedModel
from model_store.hooks import forward_hooks
from model_store.loaders import MappedOutput
from service.core.errors import MethodFailed, MethodNotApplicable, ServiceError
from service.engine.device import OUT_OF_MEMORY, UNRECOVERABLE
from service.engine.targets import Objective, Target, batch_targets, seeded_objective
from service.engine.task_scores import Scorer
from service.engine.work import ExplainJob, JobResult, MapResult
from service.methods import Method, MethodInputs, Need
from service.methods.passes import PassRunner, Steps, each_step_under, run_to_end
from service.methods.rectifiers import rectifier_rule
from service.metrics.faithfulness import MODEL_METRICS, evaluate_map

logger = logging.getLogger(__name__)

GroupKey = tuple[str, str | None, object, int | None]  # (method, layer, options, image: one image's, or all)
Outcomes = list[JobResult | ServiceError]


def run_batch(
    model: LoadedModel, jobs: Sequence[ExplainJob], chunk_size: int = 32, evaluation_steps: int = 16
) -> Outcomes:
    """Serve `jobs` together, all chunks at once; see `batch_steps`."""
    return run_to_end(batch_steps(model, jobs, chunk_size, evaluation_steps))


def batch_steps(
    model: LoadedModel,
    jobs: Sequence[ExplainJob],
    chunk_size: int = 32,
    evaluation_steps: int = 16,
    runner: PassRunner | None = None,
) -> Steps[Outcomes]:
    """Serve `jobs` together, a chunk of passes per step; returns one result per job, in order, or the error of
    a job whose method failed. Each result's `inference_ms` is the time spent in the steps, not between them.
    `runner` (default: a new one) runs the extra passes; its count of images forwarded tells the progress.

    Raises:
        Whatever the shared passes raise (out of memory, device errors): the caller splits or fails the batch.
    """
    busy_s = 0.0
    steps = _plan_steps(
        model, jobs, runner or PassRunner(model.module, chunk_size, model.layer_grids), evaluation_steps
    )
    while True:
        started = time.perf_counter()
        try:
            next(steps)
        except StopIteration as done:
            outcomes: Outcomes = done.value
            busy_s += time.perf_counter() - started
            break
        busy_s += time.perf_counter() - started
        yield
    return [replace(o, inference_ms=busy_s * 1000) if isinstance(o, JobResult) else o for o in outcomes]


def _plan_steps(
    model: LoadedModel, jobs: Sequence[ExplainJob], runner: PassRunner, evaluation_steps: int
) -> Steps[Outcomes]:
    compared = [i for i, job in enumerate(jobs) if job.reference is not None]
    references = [job.reference for job in jobs if job.reference is not None]
    # Reference images ride in the shared pass as extra rows after the batch's own: their embeddings are targets.
    stacked = torch.stack([job.image for job in jobs] + references).to(model.device, non_blocking=True)
    images = stacked[: len(jobs)]

    def wanting(need: Need) -> list[int]:
        return [i for i, job in enumerate(jobs) if any(need in m.needs for m in job.methods)]

    layer_grad_jobs, input_grad_jobs = wanting(Need.LAYER_GRADIENTS), wanting(Need.INPUT_GRADIENTS)
    layers = sorted({job.layer for job in jobs if job.layer is not None and any(m.uses_layer for m in job.methods)})
    inputs = stacked.detach().requires_grad_(bool(input_grad_jobs))
    activations, all_outputs = _shared_forward(
        model, inputs, layers, needs_graph=bool(layer_grad_jobs or input_grad_jobs)
    )
    failures: dict[int, ServiceError] = {}
    targets = batch_targets(model, jobs, all_outputs, compared, failures)
    logits, classes, objective, predicted = targets.logits, targets.classes, targets.objective, targets.predicted

    gradients: dict[str, dict[Target, torch.Tensor]] = {}
    if layer_grad_jobs:
        for layer in sorted({jobs[i].layer for i in layer_grad_jobs}):
            members = [i for i in layer_grad_jobs if jobs[i].layer == layer]
            gradients[f"layer:{layer}"] = _per_target_gradients(objective, activations[layer], members, classes)
    if input_grad_jobs:
        gradients["input"] = _per_target_gradients(objective, inputs, input_grad_jobs, classes)
    for need, rule in ((Need.GUIDED_GRADIENTS, "guided"), (Need.DECONV_GRADIENTS, "deconvnet")):
        if members := wanting(need):
            gradients[rule] = _rectified_gradients(model, images, members, classes, rule)
    # The graph is no longer needed: let it go before the extra passes, which may pause between chunks.
    logits = logits.detach()
    activations = {layer: output.detach() for layer, output in activations.items()}
    scored = None
    if (scorer_of := targets.scorer_of) is not None:
        outputs = all_outputs if model.detection else logits

        @cache
        def scored(i: int) -> tuple[Scorer, torch.Tensor]:
            """Image i's scorer, and its targets' (1, T) scores in the shared pass."""
            scorer = scorer_of(i)
            with torch.no_grad():
                return scorer, scorer(outputs[i : i + 1]).detach()

    maps = yield from _compute_maps(
        model, jobs, classes, images, logits, activations, gradients, runner, failures, scored
    )
    for i, job in enumerate(jobs):
        if job.evaluate and i not in failures:
            evaluated = []
            for m in maps[i]:
                scores = yield from each_step_under(
                    torch.no_grad,
                    evaluate_map(
                        runner, images[i], logits[i], m.class_index, m.map, evaluation_steps, model.multilabel
                    ),
                )
                evaluated.append(replace(m, evaluation=scores))
            maps[i] = evaluated
        if job.metrics and i not in failures:
            maps[i] = yield from _scored_by_metrics(runner, images[i], logits[i], maps[i], job.metrics)
    # A segmentation model's logits per pixel stay on the device; its answer needs the predicted classes.
    logits_cpu = logits.float().cpu() if predicted is None else torch.empty(len(jobs), 0)
    del all_outputs
    masks = predicted.to(torch.uint8).cpu() if predicted is not None else None
    return [
        failures.get(i)
        or JobResult(
            logits=logits_cpu[i],
            maps=tuple(maps[i]),
            batch_size=len(jobs),
            inference_ms=0.0,
            similarity=targets.similarities.get(i),
            mask=masks[i] if masks is not None else None,
            detections=tuple(targets.detections[i]) if targets.detections is not None else None,
        )
        for i in range(len(jobs))
    ]


def _scored_by_metrics(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    maps: list[MapResult],
    metrics: tuple[tuple[str, dict[str, float | bool | str]], ...],
) -> Steps[list[MapResult]]:
    """Each map with the metrics that run through the model (`service.metrics.faithfulness`), (name, parameters)."""
    scored = []
    for m in maps:
        values = {}
        for name, parameters in metrics:
            values[name] = yield from each_step_under(
                torch.no_grad, MODEL_METRICS[name](runner, image, logits, m.class_index, m.map, parameters)
            )
        scored.append(replace(m, metric_values=values))
    return scored


def _shared_forward(
    model: LoadedModel, inputs: torch.Tensor, layers: list[str], needs_graph: bool
) -> tuple[dict[str, torch.Tensor], Any]:
    """(B, 3, H, W) -> captured activations {layer: (B, C, h, w)} and the model's output: logits (B, K, ...), or a
    detection model's list of B outputs."""
    captured: dict[str, torch.Tensor] = {}

    def capture(layer: str, output: torch.Tensor) -> torch.Tensor:
        if needs_graph and not output.requires_grad:
            output = output.detach().requires_grad_()
        captured[layer] = output
        # Downstream layers get a copy, so in-place ops after the layer cannot change what was captured.
        return output.clone()

    mode = torch.enable_grad() if needs_graph else torch.inference_mode()
    with forward_hooks(model.module, layers, capture, grids=model.layer_grids), mode:
        logits = model.module(inputs)
    return captured, logits


def _per_target_gradients(
    objective: Objective, wrt: torch.Tensor, members: list[int], classes: list[list[int]]
) -> dict[Target, torch.Tensor]:
    """{(row, class): d score / d wrt[row]} for the member rows, (B, ...) wrt, the score that of `objective`."""
    gradients: dict[Target, torch.Tensor] = {}
    for r in range(max((len(classes[i]) for i in members), default=0)):
        rows = [i for i in members if len(classes[i]) > r]
        total = objective([(i, classes[i][r]) for i in rows])
        grad = None
        if total.requires_grad:  # a detection whose box no output box matches scores a constant 0
            (grad,) = torch.autograd.grad(total, wrt, retain_graph=True, allow_unused=True)
        for i in rows:
            gradients[(i, classes[i][r])] = grad[i] if grad is not None else torch.zeros_like(wrt[i])
    return gradients


def _rectified_gradients(
    model: LoadedModel, images: torch.Tensor, members: list[int], classes: list[list[int]], rule: str
) -> dict[Target, torch.Tensor]:
    """Input gradients of the member images in a pass of their own with the rectifiers' rule changed."""
    if isinstance(model.module, torch.jit.ScriptModule):
        raise MethodNotApplicable("guided backprop and deconvnet need hookable rectifiers (not TorchScript)")
    subset = images[members].detach().requires_grad_()
    with rectifier_rule(model.module, rule), torch.enable_grad():  # type: ignore[arg-type]
        logits = model.module(subset)
    local = _per_target_gradients(
        seeded_objective(logits, None), subset, list(range(len(members))), [classes[i] for i in members]
    )
    return {(members[j], c): g for (j, c), g in local.items()}


def _compute_maps(
    model: LoadedModel,
    jobs: Sequence[ExplainJob],
    classes: list[list[int]],
    images: torch.Tensor,
    logits: torch.Tensor,
    activations: dict[str, torch.Tensor],
    gradients: dict[str, dict[Target, torch.Tensor]],
    runner: PassRunner,
    failures: dict[int, ServiceError],
    scored: Callable[[int], tuple[Scorer, torch.Tensor]] | None = None,
) -> Steps[list[list[MapResult]]]:
    """Run each (method, layer, options) group once over all its targets; maps in each job's order.

    With `scored` (a model that is not a classifier), each method runs one image at a time, its passes through
    the model with its output mapped to that image's scores, which it reads as its logits.

    A group whose method raises (other than running out of memory or a device error) fails only the jobs in
    it: they are recorded in `failures` and get no maps.
    """
    groups: dict[GroupKey, list[Target]] = defaultdict(list)
    methods: dict[str, Method] = {}
    for i, job in enumerate(jobs):
        for method in job.methods:
            methods[method.name] = method
            image = i if scored is not None else None
            groups[(method.name, job.layer if method.uses_layer else None, job.options_for(method), image)].extend(
                (i, c) for c in classes[i]
            )

    computed: dict[tuple[str, int, int], torch.Tensor] = {}
    model_module = runner.module
    for (name, layer, options, image), targets in groups.items():
        if not targets:  # its jobs explain nothing (no label above a threshold, no detection)
            continue
        group_logits = logits
        try:
            if image is not None and scored is not None:
                scorer, scores = scored(image)
                runner.module = MappedOutput(model_module, scorer)
                group_logits = torch.zeros(len(jobs), scores.shape[1], device=scores.device)
                group_logits[image] = scores[0]
            method_inputs = _method_inputs(
                model, methods[name], layer, options, targets, images, group_logits, activations, gradients, runner
            )
            raw = yield from each_step_under(torch.no_grad, methods[name].compute_steps(method_inputs))
            raw = torch.nan_to_num(raw.detach().float()).cpu()
        except OUT_OF_MEMORY + UNRECOVERABLE:
            raise
        except ServiceError as exc:
            for i, _ in targets:
                failures[i] = exc
            continue
        except Exception:
            logger.exception("method %s failed for %d targets", name, len(targets))
            for i, _ in targets:
                failures[i] = MethodFailed(f"the method {name} failed on this request; the error was logged")
            continue
        finally:
            runner.module = model_module
        for (i, c), row in zip(targets, raw, strict=True):
            computed[(name, i, c)] = row

    return [
        [
            MapResult(
                method=m.name, class_index=c, layer=job.layer if m.uses_layer else None, map=computed[(m.name, i, c)]
            )
            for m in job.methods
            for c in classes[i]
        ]
        if i not in failures
        else []
        for i, job in enumerate(jobs)
    ]


def _method_inputs(
    model: LoadedModel,
    method: Method,
    layer: str | None,
    options: object,
    targets: list[Target],
    images: torch.Tensor,
    logits: torch.Tensor,
    activations: dict[str, torch.Tensor],
    gradients: dict[str, dict[Target, torch.Tensor]],
    runner: PassRunner,
) -> MethodInputs:
    """Stack the rows of `targets` into (N, ...) tensors for what `method` needs."""
    device = model.device
    rows = torch.tensor([i for i, _ in targets], device=device)
    class_tensor = torch.tensor([c for _, c in targets], device=device)
    needs = method.needs

    def stacked(key: str) -> torch.Tensor:
        return torch.stack([gradients[key][target] for target in targets]).detach()

    class_weights = None
    if Need.CLASSIFIER_WEIGHTS in needs:
        if layer != model.cam_layer:
            raise MethodNotApplicable(f"{method.name} needs the layer that feeds a GAP + linear head")
        class_weights = model.classifier_weight()[class_tensor]
    preprocessing = model.preprocessing
    mean, std = torch.tensor(preprocessing.mean).view(3, 1, 1), torch.tensor(preprocessing.std).view(3, 1, 1)
    return MethodInputs(
        image_index=rows,
        classes=class_tensor,
        images=images[rows],
        logits=logits[rows],
        black=(-mean / std).to(device),
        white=((1 - mean) / std).to(device),
        options=options,
        activations=activations[layer].detach()[rows] if layer is not None and Need.ACTIVATIONS in needs else None,
        gradients=stacked(f"layer:{layer}") if Need.LAYER_GRADIENTS in needs else None,
        class_weights=class_weights,
        input_gradients=stacked("input") if Need.INPUT_GRADIENTS in needs else None,
        guided_gradients=stacked("guided") if Need.GUIDED_GRADIENTS in needs else None,
        deconv_gradients=stacked("deconvnet") if Need.DECONV_GRADIENTS in needs else None,
        runner=runner,
        layer=layer,
    )
