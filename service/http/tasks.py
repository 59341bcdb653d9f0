"""What each model task (`model_store.manifest.TASKS`) allows of a request, beside what every request may ask.

- classification: classes by index or label, or the top k; `threshold` and `reference` are refused.
- multilabel: without classes, the labels whose sigmoid reaches `threshold` (default 0.5), at most top k.
- embedding: no classes; a `reference` image is required, and the explanations target the cosine similarity of
  the two images' embeddings, which only the methods the shared pass serves can explain.
- segmentation: classes by index or label, or the top k by predicted pixels; each explanation targets the class's
  logits summed over its predicted pixels, or over the pixels of a `mask` image sent with the request, which,
  likewise, only the methods the shared pass serves can explain.
- detection: no classes; `detection` indices (default the top k detections whose score reaches
  `score_threshold`), each explanation targeting its detection's box score, from the shared pass likewise.
"""

from api_schemas import DEFAULT_SCORE_THRESHOLD, DEFAULT_THRESHOLD, ExplainParameters
from model_store import LoadedModel
from service.core.errors import BadRequest, InvalidParameter, MethodNotApplicable
from service.methods import METHODS, Method, Need

SIMILARITY_TARGET = 0
"""The one target of an embedding model's explanations (the similarity to the reference), in place of a class."""
SHARED_PASS_NEEDS = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS, Need.INPUT_GRADIENTS})
"""What a method may need to explain a similarity or a segmentation class: the shared pass's activations and
gradients, whose seed is the similarity's gradient or the class's mask; methods with passes of their own score the
logits of one label per image."""
SHARED_PASS_TASKS = {
    "embedding": "a similarity",
    "segmentation": "a segmentation class",
    "detection": "a detection's box score",
}
"""The tasks whose explanations only the shared pass serves, and what those explanations target."""


def explains_task(method: Method, model: LoadedModel) -> bool:
    """Whether `method` can explain `model`'s task (with its default options)."""
    return model.task not in SHARED_PASS_TASKS or method.needs <= SHARED_PASS_NEEDS


def check_task_request(params: ExplainParameters, methods: tuple[Method, ...], model: LoadedModel) -> None:
    """An embedding model's explanations target the similarity to the reference (no classes), a segmentation
    model's a class's pixels: for both, no evaluation, and only the methods that the shared pass serves.

    Raises:
        InvalidParameter: classes, top_k or threshold for an embedding model; classes for a detection model,
            detections for any other; evaluate for either.
        MethodNotApplicable: a method that scores classes in passes of its own.
    """
    if params.detection is not None and not model.detection:
        raise InvalidParameter(f"'detection' applies to detection models; model '{model.name}' is a {model.task} model")
    if model.detection and params.class_ is not None:
        raise InvalidParameter(
            f"'class' does not apply to model '{model.name}', a detection model: name detections by their index "
            "with 'detection' (predict lists them)"
        )
    if model.task not in SHARED_PASS_TASKS:
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
        extra = method.extra_passes(0, model.preprocessing.input_size, method.options_from(params.model_dump()), 1)
        if not explains_task(method, model) or extra:
            usable = sorted(
                m.name
                for m in METHODS.values()
                if explains_task(m, model) and m.not_applicable_to(model.module) is None
            )
            raise MethodNotApplicable(
                f"{method.name} does not apply to model '{model.name}', a {model.task} model: it scores classes in "
                f"passes of its own (or with its classifier's weights); these methods explain "
                f"{SHARED_PASS_TASKS[model.task]}: {usable}"
            )


def resolve_threshold(requested: float | None, model: LoadedModel) -> float | None:
    """The threshold of a multilabel model (the default when not given), None for classification.

    Raises:
        InvalidParameter: a threshold for a model that is not multilabel.
    """
    if not model.multilabel:
        if requested is not None:
            raise InvalidParameter(
                f"'threshold' applies to multilabel models; model '{model.name}' is a {model.task} model"
            )
        return None
    return DEFAULT_THRESHOLD if requested is None else requested


def resolve_score_threshold(requested: float | None, model: LoadedModel) -> float | None:
    """The score threshold of a detection model (the default when not given), None for the other tasks.

    Raises:
        InvalidParameter: a score threshold for a model that is not a detection model.
    """
    if not model.detection:
        if requested is not None:
            raise InvalidParameter(
                f"'score_threshold' applies to detection models; model '{model.name}' is a {model.task} model"
            )
        return None
    return DEFAULT_SCORE_THRESHOLD if requested is None else requested


def check_mask(model: LoadedModel, mask: bytes | None) -> None:
    """Only a segmentation model's explanations sum over a region that a request may give.

    Raises:
        InvalidParameter: a mask sent to another task.
    """
    if mask is not None and not model.segmentation:
        raise InvalidParameter(f"'mask' applies to segmentation models; model '{model.name}' is a {model.task} model")


def check_reference(model: LoadedModel, reference: bytes | None) -> None:
    """An embedding model needs the reference image its explanations compare with; no other model takes one.

    Raises:
        BadRequest: a reference missing for an embedding model (`missing_image`), or sent to another model.
    """
    if model.embedding and reference is None:
        raise BadRequest(
            f"model '{model.name}' is an embedding model: send a second image as 'reference' (a file part, or "
            "base64 in JSON); the explanations target the cosine similarity of the two images",
            code="missing_image",
        )
    if reference is not None and not model.embedding:
        raise InvalidParameter(f"'reference' applies to embedding models; model '{model.name}' is a {model.task} model")
