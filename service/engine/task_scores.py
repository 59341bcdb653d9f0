"""What a method with passes of its own scores, for a model whose output is not one logit per class.

A multi-pass method (Score-CAM, occlusion, integrated gradients, ...) runs the model on inputs made from one image
and reads column `t` of the (M, K) output as its target's score. For the other tasks the explainer runs those
methods one image at a time through the model with its output mapped (`MappedOutput`) to the scores that the shared
pass differentiates for that image's targets, so that column `t` is target `t`'s score:

- segmentation: column c is class c's logits summed over the image's mask of c (the pixels predicted as c, or the
  region the request sent), pytorch-grad-cam's `SemanticSegmentationTarget`;
- embedding: column 0 is the cosine similarity to the reference image's embedding (`SimilarityToConceptTarget`);
- detection: column d is detection d's box score (`FasterRCNNBoxScoreTarget`).
"""

from collections.abc import Callable
from typing import Any

import torch

from service.engine.detections import Detection, box_score

Scorer = Callable[[Any], torch.Tensor]
"""The model's output for M inputs -> (M, targets) scores."""


def segment_scorer(masks: torch.Tensor) -> Scorer:
    """(K, H, W) masks, one per class -> (M, K, H, W) logits to (M, K) class scores."""
    return lambda logits: (logits * masks).sum(dim=(-2, -1))


def similarity_scorer(reference: torch.Tensor) -> Scorer:
    """(K,) reference embedding -> (M, K) embeddings to (M, 1) cosine similarities."""
    return lambda embeddings: torch.nn.functional.cosine_similarity(embeddings, reference[None], dim=1)[:, None]


def detection_scorer(detections: list[Detection]) -> Scorer:
    """An image's detections -> M outputs (a detector's list) to (M, detections) box scores."""

    def scores(outputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack([box_score(output, d) for d in detections]) for output in outputs])

    return scores
