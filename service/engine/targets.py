"""What each job of a batch explains, and the score its explanations differentiate, by model task.

From the shared pass's outputs, `batch_targets` finds each job's targets (classes; a segmentation's classes with
the most pixels; a detection model's detections) and builds:

- the objective the shared pass differentiates, one round of targets at a time: a class's logit, a segmentation
  class's logits summed over its mask (pytorch-grad-cam's `SemanticSegmentationTarget`), an embedding's cosine
  similarity to its reference (`SimilarityToConceptTarget`) or a detection's box score
  (`FasterRCNNBoxScoreTarget`);
- for the tasks beyond classification, each image's `Scorer`, through which the methods with passes of their own
  read the same scores (`service.engine.task_scores`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from model_store import LoadedModel
from service.core.errors import InvalidParameter, ServiceError
from service.engine.detections import Detection, box_score, kept_detections
from service.engine.task_scores import Scorer, detection_scorer, segment_scorer, similarity_scorer
from service.engine.work import ExplainJob

Target = tuple[int, int]  # (job index, class index; a detection model's: detection index)
SeedOf = Callable[[int, int], torch.Tensor]  # (row, class) -> the seed of its backward pass, shaped like its logits
Objective = Callable[[list[Target]], torch.Tensor]  # targets (one per row) -> the sum of their scores, a scalar


@dataclass(frozen=True)
class BatchTargets:
    """A batch's targets and how they score.

    Attributes:
        logits: the batch's own rows of the output (B, K, ...); empty (B, 0) for a detection model.
        classes: each job's targets, in its order.
        objective: what the shared pass differentiates for a round of targets.
        scorer_of: image i's `Scorer` for the methods with passes of their own; None for a classifier.
        similarities: an embedding model's cosine similarity per compared row.
        predicted: a segmentation model's (B, H, W) predicted classes.
        detections: a detection model's kept detections per image.
    """

    logits: torch.Tensor
    classes: list[list[int]]
    objective: Objective
    scorer_of: Callable[[int], Scorer] | None
    similarities: dict[int, float]
    predicted: torch.Tensor | None = None
    detections: list[list[Detection]] | None = None


def batch_targets(
    model: LoadedModel, jobs: Sequence[ExplainJob], outputs: Any, compared: list[int], failures: dict[int, ServiceError]
) -> BatchTargets:
    """The targets of `jobs` from the shared pass's `outputs` (the batch's rows, then the `compared` rows'
    reference images'); a job whose named detection the image lacks is recorded in `failures`."""
    if model.detection:
        # The output is each image's boxes; the targets are its detections, and no logits are kept.
        detections = [
            kept_detections(output, job.score_threshold or 0.0) for output, job in zip(outputs, jobs, strict=True)
        ]
        return BatchTargets(
            logits=torch.empty(len(jobs), 0, device=model.device),
            classes=[_detection_targets(job, detections[i], i, failures) for i, job in enumerate(jobs)],
            objective=_box_objective(outputs, detections),
            scorer_of=partial(_detections_scorer, detections),
            similarities={},
            detections=detections,
        )
    logits = outputs[: len(jobs)]
    # What each embedding compared is compared with: its reference image's embedding, or a stored concept.
    concepts = {i: job.concept.to(logits.device, logits.dtype) for i, job in enumerate(jobs) if job.concept is not None}
    reference_of = dict(zip(compared, outputs[len(jobs) :].detach(), strict=True)) | concepts
    similarity_seeds, similarities = _similarity_seeds(logits, reference_of)
    # A segmentation model's (B, H, W) predicted classes: the masks its explanations sum the logits over.
    predicted = logits.detach().argmax(dim=1) if model.segmentation else None
    regions = {i: torch.from_numpy(job.region).to(model.device) for i, job in enumerate(jobs) if job.region is not None}
    return BatchTargets(
        logits=logits,
        classes=[
            _target_classes(job, logits[i])
            if predicted is None
            else _segment_classes(job, predicted[i], logits.shape[1], regions.get(i))
            for i, job in enumerate(jobs)
        ],
        objective=seeded_objective(logits, _target_seeds(logits, predicted, regions, similarity_seeds)),
        scorer_of=_scorer_of(model, logits, predicted, regions, reference_of),
        similarities=similarities,
        predicted=predicted,
    )


def _detection_targets(
    job: ExplainJob, found: list[Detection], row: int, failures: dict[int, ServiceError]
) -> list[int]:
    """The indices of the detections a job explains: those it names, or the `top_k` best; a named index that the
    image has no detection for fails the job (`failures[row]`)."""
    if job.classes is None:
        return list(range(min(job.top_k, len(found))))
    missing = [d for d in job.classes if d >= len(found)]
    if missing:
        failures[row] = InvalidParameter(
            f"'detection' {missing[0]} is out of range: the image has {len(found)} detections with a score of at "
            f"least {job.score_threshold} (indices 0..{len(found) - 1})"
            if found
            else f"'detection' {missing[0]}: the image has no detection with a score of at least {job.score_threshold}"
        )
        return []
    return list(job.classes)


def _detections_scorer(detections: list[list[Detection]], i: int) -> Scorer:
    return detection_scorer(detections[i])


def _scorer_of(
    model: LoadedModel,
    logits: torch.Tensor,
    predicted: torch.Tensor | None,
    regions: dict[int, torch.Tensor],
    reference_of: dict[int, torch.Tensor],
) -> Callable[[int], Scorer] | None:
    """How image i's targets score any output, for the methods with passes of their own (see
    `service.engine.task_scores`); None for a classifier, whose logits are its scores."""
    if predicted is not None:
        classes = logits.shape[1]

        def segment(i: int) -> Scorer:
            if i in regions:
                return segment_scorer(regions[i].expand(classes, *regions[i].shape))
            one_hot = torch.nn.functional.one_hot(predicted[i], classes).permute(2, 0, 1).to(logits.dtype)
            return segment_scorer(one_hot)

        return segment
    if model.embedding:
        return lambda i: similarity_scorer(reference_of[i])
    return None


def seeded_objective(logits: torch.Tensor, seeds: SeedOf | None) -> Objective:
    """The sum over targets of the logits weighted by each target's seed (without seeds: the class's logit)."""

    def objective(targets: list[Target]) -> torch.Tensor:
        seed = torch.zeros_like(logits)
        for i, c in targets:
            if seeds is not None:
                seed[i] = seeds(i, c)
            else:
                seed[i, c] = 1.0
        return (logits * seed).sum()

    return objective


def _box_objective(outputs: list[dict[str, torch.Tensor]], detections: list[list[Detection]]) -> Objective:
    """The sum over targets (row, detection index) of the detection's box score in its image's output."""

    def objective(targets: list[Target]) -> torch.Tensor:
        return torch.stack([box_score(outputs[i], detections[i][d]) for i, d in targets]).sum()

    return objective


def _target_seeds(
    logits: torch.Tensor,
    predicted: torch.Tensor | None,
    regions: dict[int, torch.Tensor],
    similarity_seeds: dict[int, torch.Tensor],
) -> SeedOf:
    """What each target's backward pass starts from, shaped like its row of logits: the class's one-hot (the
    gradient of its logit), a segmentation class's mask in its channel (of its logits summed over the pixels
    predicted as that class, or over the row's posted region: pytorch-grad-cam's `SemanticSegmentationTarget`),
    or the gradient of the similarity for a row compared with a reference (see `_similarity_seeds`)."""

    def seed_of(row: int, class_index: int) -> torch.Tensor:
        if row in similarity_seeds:
            return similarity_seeds[row]
        seed = torch.zeros_like(logits[row])
        if predicted is None:
            seed[class_index] = 1.0
        else:
            seed[class_index] = regions[row] if row in regions else (predicted[row] == class_index).to(seed.dtype)
        return seed

    return seed_of


def _similarity_seeds(
    logits: torch.Tensor, reference_of: dict[int, torch.Tensor]
) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """For the rows compared with a reference: the gradient of cos(embedding, reference) at the embedding (K,),
    the seed of their backward passes in place of a class's one-hot (pytorch-grad-cam's
    `SimilarityToConceptTarget`, the reference a constant), and the similarity itself. (B, K) embeddings, and
    {row: (K,) reference}: a reference image's embedding or a stored concept."""
    seeds: dict[int, torch.Tensor] = {}
    similarities: dict[int, float] = {}
    with torch.enable_grad():
        # Clones: the shared pass may have run in inference mode, whose tensors take no part in autograd.
        for row, reference in reference_of.items():
            reference = reference.detach().clone()
            embedding = logits[row].detach().clone().requires_grad_()
            similarity = torch.nn.functional.cosine_similarity(embedding, reference, dim=0)
            (seeds[row],) = torch.autograd.grad(similarity, embedding)
            similarities[row] = float(similarity.detach())
    return seeds, similarities


def _target_classes(job: ExplainJob, logits: torch.Tensor) -> list[int]:
    """The job's explicit classes, or the indices of its top-k logits (K,); with a `threshold` (multilabel), only
    those whose sigmoid reaches it."""
    if job.classes is not None:
        return list(job.classes)
    best = torch.topk(logits.detach(), k=min(job.top_k, logits.shape[0]))
    if job.threshold is not None:
        return best.indices[best.values.sigmoid() >= job.threshold].tolist()
    return best.indices.tolist()


def _segment_classes(
    job: ExplainJob, predicted: torch.Tensor, num_classes: int, region: torch.Tensor | None
) -> list[int]:
    """The job's explicit classes, or the top-k classes of a segmentation by predicted pixels (H, W), within the
    posted (H, W) region if any, the most first (ties: the lower index), those with at least one pixel."""
    if job.classes is not None:
        return list(job.classes)
    inside = predicted.flatten() if region is None else predicted[region > 0]
    pixels = torch.bincount(inside, minlength=num_classes).cpu()
    order = sorted(range(num_classes), key=lambda c: -int(pixels[c]))
    return [c for c in order[: job.top_k] if pixels[c] > 0]
