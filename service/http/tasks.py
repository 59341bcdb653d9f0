"""What each model task (`model_store.manifest.TASKS`) allows of a request, beside what every request may ask.

- classification: classes by index or label, or the top k; `threshold` and `reference` are refused.
- multilabel: without classes, the labels whose sigmoid reaches `threshold` (default 0.5), at most top k.
- embedding: no classes; a `reference` image or a stored `concept` is required, and the explanations target the
  cosine similarity of the image's embedding to the reference's embedding or to the concept.
- segmentation: classes by index or label, or the top k by predicted pixels; each explanation targets the class's
  logits summed over its predicted pixels, or over the pixels of a `mask` image sent with the request.
- detection: no classes; `detection` indices (default the top k detections whose score reaches
  `score_threshold`), each explanation targeting its detection's box score.

For those three, no `evaluate` (it scores class probabilities), and no method that needs a classifier's weights
(CAM) or the rectifiers' backward rule (guided backpropagation, deconvnet and their combinations).
"""

from typing import TYPE_CHECKING

from api_schemas import DEFAULT_SCORE_THRESHOLD, DEFAULT_THRESHOLD, ExplainParameters
from model_store import LoadedModel
from service.core.errors import BadRequest, InvalidParameter, MethodNotApplicable
from service.methods import Method, Need

if TYPE_CHECKING:
    import torch

SIMILARITY_TARGET = 0
"""The one target of an embedding model's explanations (the similarity to the reference), in place of a class."""
CLASSIFIER_NEEDS = frozenset({Need.CLASSIFIER_WEIGHTS, Need.GUIDED_GRADIENTS, Need.DECONV_GRADIENTS})
"""What only a classifier's explanations get: its linear head's weights, and the rectified passes (which
differentiate a class's logit)."""
TARGET_TASKS = {
    "embedding": "a similarity",
    "segmentation": "a segmentation class",
    "detection": "a detection's box score",
}
"""The tasks whose explanations target something else than a class's logit, and what they target."""


def explains_task(method: Method, model: LoadedModel) -> bool:
    """Whether `method` can explain `model`'s task."""
    return model.task not in TARGET_TASKS or not method.needs & CLASSIFIER_NEEDS


def check_task_request(params: ExplainParameters, methods: tuple[Method, ...], model: LoadedModel) -> None:
    """An embedding model's explanations target the similarity to the reference (no classes), a segmentation
    model's a class's pixels, a detection model's a detection's box: for each, no evaluation, and no method that
    only a classifier's explanations get.

    Raises:
        InvalidParameter: classes, top_k or threshold for an embedding model; classes for a detection model,
            detections for any other; evaluate for those three.
        MethodNotApplicable: a method that needs a classifier's weights or rectified passes.
    """
    refuse_unless("detection", "detection", params.detection, model)
    if model.detection and params.class_ is not None:
        raise InvalidParameter(
            f"'class' does not apply to model '{model.name}', a detection model: name detections by their index "
            "with 'detection' (predict lists them)"
        )
    if model.task not in TARGET_TASKS:
        return
    if model.embedding:
        for name, value in (("class", params.class_), ("top_k", params.top_k), ("threshold", params.threshold)):
            if value is not None:
                raise InvalidParameter(
                    f"'{name}' does not apply to model '{model.name}', an embedding model: its explanations target "
                    "the cosine similarity of the image to the 'reference' image"
                )
    if params.evaluate:
        raise InvalidParameter(
            f"'evaluate' scores the probabilities of one label per image; model '{model.name}' is a {model.task} model"
        )
    for method in methods:
        if not explains_task(method, model):
            raise MethodNotApplicable(
                f"{method.name} does not apply to model '{model.name}', a {model.task} model: it needs a "
                f"classifier's linear head or a class logit's rectified backward pass, not {TARGET_TASKS[model.task]}; "
                f"GET /v1/models/{model.name} lists the methods that apply"
            )


def refuse_unless(task: str, name: str, value: object, model: LoadedModel) -> None:
    """A parameter that only models of `task` take.

    Raises:
        InvalidParameter: `value` given to a model of another task.
    """
    if value is not None and model.task != task:
        raise InvalidParameter(f"'{name}' applies to {task} models; model '{model.name}' is a {model.task} model")


def resolve_threshold(requested: float | None, model: LoadedModel) -> float | None:
    """The threshold of a multilabel model (the default when not given), None for the other tasks.

    Raises:
        InvalidParameter: a threshold for a model that is not multilabel.
    """
    refuse_unless("multilabel", "threshold", requested, model)
    if not model.multilabel:
        return None
    return DEFAULT_THRESHOLD if requested is None else requested


def resolve_score_threshold(requested: float | None, model: LoadedModel) -> float | None:
    """The score threshold of a detection model (the default when not given), None for the other tasks.

    Raises:
        InvalidParameter: a score threshold for a model that is not a detection model.
    """
    refuse_unless("detection", "score_threshold", requested, model)
    if not model.detection:
        return None
    return DEFAULT_SCORE_THRESHOLD if requested is None else requested


def check_mask(model: LoadedModel, mask: bytes | None) -> None:
    """Only a segmentation model's explanations sum over a region that a request may give.

    Raises:
        InvalidParameter: a mask sent to another task.
    """
    refuse_unless("segmentation", "mask", mask, model)


def check_reference(model: LoadedModel, reference: bytes | None, concept: str | None) -> "torch.Tensor | None":
    """An embedding model needs what its explanations compare with, a reference image or a stored concept (the
    concept's vector is returned); no other model takes either.

    Raises:
        BadRequest: neither for an embedding model (`missing_image`).
        InvalidParameter: both, an unknown concept, or either sent to another model.
    """
    refuse_unless("embedding", "reference", reference, model)
    refuse_unless("embedding", "concept", concept, model)
    if not model.embedding:
        return None
    if reference is None and concept is None:
        raise BadRequest(
            f"model '{model.name}' is an embedding model: send a second image as 'reference' (a file part, or "
            "base64 in JSON), or name a stored 'concept'; the explanations target the cosine similarity to it",
            code="missing_image",
        )
    if reference is not None and concept is not None:
        raise InvalidParameter("give either a 'reference' image or a 'concept', not both")
    if concept is None:
        return None
    if concept not in model.concepts:
        raise InvalidParameter(
            f"unknown concept '{concept[:40]}' for model '{model.name}'; its concepts are {sorted(model.concepts)}"
        )
    return model.concepts[concept]
