"""From raw request parameters to a validated, model-resolved explanation plan.

Parameters may come from the query string and from the body (form or JSON fields), not both for one name.
Names are validated by the `api_schemas` models; methods, layers and classes are then resolved against the
model, and the request's cost in extra forward passes is checked against the bound, so that nothing invalid
or unbounded reaches the worker.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from api_schemas import ExplainParameters, OverlayFormat
from model_store import LoadedModel
from model_store.labels import AmbiguousLabel, UnknownLabel
from service.core.errors import (
    ConflictingParameters,
    CostExceeded,
    InvalidParameter,
    MethodNotApplicable,
    UnknownClass,
    UnknownLayer,
)
from service.http.request_body import JsonFields
from service.http.tasks import SIMILARITY_TARGET, check_task_request, resolve_score_threshold, resolve_threshold
from service.methods import GRADIENT_PASS_COST, METHODS, Method, Need, resolve_method
from service.metrics import METRICS
from service.metrics.attribution import Parameters
from service.metrics.faithfulness import evaluation_passes

DEFAULT_METHOD = "grad_cam"
DEFAULT_COLORMAP = "jet"
DEFAULT_ALPHA = 0.5
DEFAULT_BBOX_THRESHOLD = 0.2
ALL_OUTPUTS = ("map", "overlay", "logits")
CLASS_INDEX = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class ExplainPlan:
    methods: tuple[Method, ...]
    classes: tuple[int, ...] | None
    top_k: int
    threshold: float | None
    """Multilabel models: the sigmoid a label reaches to be listed and, without `classes`, explained."""
    score_threshold: float | None
    """Detection models: the score a box reaches to be a detection (then `classes` are detection indices)."""
    layer: str | None
    colormap: str
    alpha: float
    include: frozenset[str]
    options: tuple[object, ...]
    """The options of each method that has parameters."""
    map_encoding: str
    overlay_format: OverlayFormat
    overlay_max_side: int
    bbox_threshold: float | None
    evaluate: bool
    metrics: dict[str, Parameters]
    """Quantus's metrics to compute for each explanation, by name (`service.metrics.METRICS`), with the
    parameters each runs with."""
    target_box: tuple[float, float, float, float] | None
    """Where the object is (x0, y0, x1, y1, the image's pixels), for the localisation metrics."""
    extra_passes: int
    """Images forwarded beyond the shared pass (long work when more than one chunk)."""
    cost: int
    """The same in forward-pass equivalents (a forward + backward pass counts 3), checked against the bound."""

    @property
    def class_count(self) -> int:
        """Classes explained per method: the named ones, or the `top_k` best (at most, for multilabel)."""
        return len(self.classes) if self.classes is not None else self.top_k


def parse_parameters(model: type[P], query: QueryParams, body_fields: dict[str, Any]) -> P:
    """Merge query and body parameters and validate them with `model`.

    Raises:
        ConflictingParameters: a name given both in the query and in the body.
        InvalidParameter: an unknown name or a value of the wrong type or range.
    """
    if isinstance(body_fields, JsonFields):
        check_json_types(model, body_fields)
    merged: dict[str, Any] = dict(body_fields)
    for key in query.keys():
        if key in body_fields:
            raise ConflictingParameters(f"'{key}' is given both in the query string and in the body")
        values = query.getlist(key)
        merged[key] = values[0] if len(values) == 1 else values
    return validate_fields(model, merged)


def check_json_types(model: type[BaseModel], fields: dict[str, Any]) -> None:
    """Refuse a JSON value whose JSON type the schema of its field does not allow (`true` for an integer, `"3"`
    for a number), which pydantic's lax mode, needed for form text, would otherwise convert. Unknown names are
    left to the model.

    Raises:
        InvalidParameter: the fields of the wrong JSON type, all of them in the message.
    """
    properties = _json_properties(model)
    for name, value in fields.items():  # lengths first: a list of millions is refused before any item is looked at
        longest = _longest_list(properties.get(name, {}))
        if isinstance(value, list) and longest is not None and len(value) > longest:
            raise InvalidParameter(f"invalid parameters: {name}: at most {longest} values, not {len(value)}")
    wrong = [name for name, value in fields.items() if name in properties and not _json_fits(value, properties[name])]
    if wrong:
        raise InvalidParameter(
            "invalid parameters: " + "; ".join(f"{name}: not a JSON {_json_kinds(properties[name])}" for name in wrong)
        )


@lru_cache(maxsize=32)
def _json_properties(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True).get("properties", {})


def _json_fits(value: Any, schema: dict[str, Any]) -> bool:
    for branch in schema.get("anyOf", [schema]):
        kind = branch.get("type")
        if kind is None or (
            _json_is(value, kind)
            and (kind != "array" or all(_json_fits(item, branch.get("items", {})) for item in value))
        ):
            return True
    return False


def _longest_list(schema: dict[str, Any]) -> int | None:
    """The most items any array branch of the field's schema allows (None: no array branch)."""
    branches = schema.get("anyOf", [schema])
    return max((b["maxItems"] for b in branches if b.get("type") == "array" and "maxItems" in b), default=None)


def _json_is(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "boolean": isinstance(value, bool),
        "integer": number and float(value).is_integer(),
        "number": number,
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "null": value is None,
    }.get(kind, True)


def _json_kinds(schema: dict[str, Any]) -> str:
    return " or ".join(dict.fromkeys(str(b.get("type", "value")) for b in schema.get("anyOf", [schema])))


def validate_fields(model: type[P], fields: dict[str, Any]) -> P:
    """Validate request fields with `model`.

    Raises:
        InvalidParameter: an unknown name or a value of the wrong type or range, all of them in the message.
    """
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidParameter(f"invalid parameters: {problems}") from None


def plan_explanation(
    params: ExplainParameters,
    model: LoadedModel,
    max_classes: int,
    max_cost: int,
    evaluation_steps: int,
    overlay_max_side: int,
    max_explanations: int,
) -> ExplainPlan:
    """Resolve methods, layer and classes against `model`, bound the request's cost, its explanations (methods x
    classes) and its overlays' size (`overlay_max_side`: the service's limit).

    Raises:
        UnknownMethod, UnknownLayer, UnknownClass, MethodNotApplicable, ConflictingParameters, InvalidParameter,
        CostExceeded.
    """
    methods = _unique(resolve_method(s) for spelling in _as_list(params.method) for s in spelling.split(",") if s)
    if not methods:
        methods = (resolve_method(DEFAULT_METHOD),)
    layer = _resolve_layer(params.layer, methods, model)
    check_task_request(params, methods, model)

    class_specs = _as_list(params.class_)
    if class_specs and params.top_k is not None:
        raise ConflictingParameters("give either 'class' or 'top_k', not both")
    if len(class_specs) > max_classes or (params.top_k or 0) > max_classes:
        raise InvalidParameter(f"at most {max_classes} classes per request")
    classes = _unique(resolve_class(spec, model) for spec in class_specs) if class_specs else None
    if model.embedding:
        classes = (SIMILARITY_TARGET,)
    if model.detection:
        classes = detection_indices(params.detection, max_classes)
    threshold = resolve_threshold(params.threshold, model)
    score_threshold = resolve_score_threshold(params.score_threshold, model)
    # A multilabel model explains the labels it predicts, a detection model its detections: as many as `top_k`,
    # else up to the bound; the cost and the answer's size are counted for that many, since how many reach the
    # threshold is known only later.
    top_k = params.top_k or (max_classes if threshold is not None or score_threshold is not None else 1)
    class_count = len(classes) if classes is not None else top_k
    if len(methods) * class_count > max_explanations:
        raise InvalidParameter(
            f"{len(methods)} methods x {class_count} classes are {len(methods) * class_count} explanations; at most "
            f"{max_explanations} per request"
        )

    values = params.model_dump()
    metrics = resolve_metric_parameters(resolve_metrics(params.metrics), values, model.preprocessing.input_size)
    target_box = resolve_target_box(params.target_box, tuple(metrics))
    options_by_method = {m.name: m.options_from(values) for m in methods}
    for m in methods:
        if reason := m.options_not_applicable_to(model.module, options_by_method[m.name]):
            raise MethodNotApplicable(f"{m.name} does not apply to model '{model.name}': {reason}")
    channels = model.layer_shapes[layer][0] if layer is not None else 0
    size = model.preprocessing.input_size
    passes = {m.name: m.extra_passes(channels, size, options_by_method[m.name], class_count) for m in methods}
    extra = sum(passes.values())
    cost = sum(passes[m.name] * m.pass_cost for m in methods)
    rectified = sum(
        1 for need in (Need.GUIDED_GRADIENTS, Need.DECONV_GRADIENTS) if any(need in m.needs for m in methods)
    )
    extra += rectified
    cost += rectified * GRADIENT_PASS_COST
    if params.evaluate:
        evaluation = len(methods) * class_count * evaluation_passes(evaluation_steps)
        extra += evaluation
        cost += evaluation
    if metric_passes := sum(METRICS[name].passes_for(size, parameters) for name, parameters in metrics.items()):
        if model.task not in ("classification", "multilabel"):
            raise InvalidParameter(
                f"the metrics that run through the model apply to classifiers, not to a {model.task} model"
            )
        extra += len(methods) * class_count * metric_passes
        cost += len(methods) * class_count * metric_passes
    if cost > max_cost:
        raise CostExceeded(
            f"this request costs {cost} forward-pass equivalents beyond the shared pass; the bound is {max_cost}. "
            "Ask for fewer classes or methods, fewer samples/steps, a larger occlusion stride, a layer with fewer "
            "channels (score_cam and ablation_cam cost one pass per channel), or no evaluate"
        )

    if params.overlay_max_side is not None and params.overlay_max_side > overlay_max_side:
        raise InvalidParameter(f"overlay_max_side is at most {overlay_max_side} on this service")

    return ExplainPlan(
        methods=methods,
        classes=classes,
        top_k=top_k,
        threshold=threshold,
        score_threshold=score_threshold,
        layer=layer,
        colormap=params.colormap or DEFAULT_COLORMAP,
        alpha=DEFAULT_ALPHA if params.alpha is None else params.alpha,
        include=frozenset(_as_list(params.include)) or frozenset(ALL_OUTPUTS),
        options=tuple(options_by_method[m.name] for m in methods if m.parameters),
        map_encoding=params.map_encoding or "list",
        overlay_format=params.overlay_format or "png",
        overlay_max_side=params.overlay_max_side or overlay_max_side,
        bbox_threshold=(params.bbox_threshold or DEFAULT_BBOX_THRESHOLD) if params.bbox else None,
        evaluate=bool(params.evaluate),
        metrics=metrics,
        target_box=target_box,
        extra_passes=extra,
        cost=cost,
    )


def _resolve_layer(requested: str | None, methods: tuple[Method, ...], model: LoadedModel) -> str | None:
    """The layer of the methods that use one (None if none does); checks the methods apply to the model."""
    scripted = model.scripted
    for method in methods:
        if scripted and (method.uses_layer or method.needs & {Need.GUIDED_GRADIENTS, Need.DECONV_GRADIENTS}):
            raise MethodNotApplicable(
                f"{method.name} needs hooks into the model's layers, which model '{model.name}' (TorchScript) does "
                "not allow; input-gradient and perturbation methods still apply"
            )
    for method in methods:
        reason = method.not_applicable_to(model.module)
        if reason is not None:
            raise MethodNotApplicable(f"{method.name} does not apply to model '{model.name}': {reason}")
    if not any(method.uses_layer for method in methods):
        return None
    layer = requested or model.default_layer
    if layer is None:
        raise MethodNotApplicable(f"model '{model.name}' has no default layer; name one with 'layer'")
    if layer not in model.layer_shapes:
        raise UnknownLayer(
            f"unknown layer '{layer}' for model '{model.name}'; "
            f"list the usable layers with GET /v1/models/{model.name} (default: {model.default_layer})"
        )
    if model.reads_levels(layer) and (cannot := [m.name for m in methods if m.uses_layer and not m.reads_layer_only]):
        readers = [name for name, method in METHODS.items() if method.reads_layer_only]
        raise MethodNotApplicable(
            f"layer '{layer}' is several feature levels seen as one grid (as pytorch-grad-cam's "
            f"fasterrcnn_reshape_transform), which the model never computes: {', '.join(cannot)} need the gradient "
            f"at the layer or replace its output; at this layer use {', '.join(readers)}, or name one level's layer"
        )
    for method in methods:
        if Need.CLASSIFIER_WEIGHTS in method.needs and layer != model.cam_layer:
            where = (
                f"only at layer '{model.cam_layer}'"
                if model.cam_layer
                else "not to this model, whose head does not average-pool a layer into its linear classifier "
                "(a ViT's class token, a flattened map)"
            )
            raise MethodNotApplicable(
                f"{method.name} needs a global-average-pool + linear head and applies {where}; "
                "use grad_cam, which works at any layer"
            )
    return layer


def resolve_metrics(requested: str | list[str] | None) -> tuple[str, ...]:
    """The metrics named (comma-separated or repeated), each once.

    Raises:
        InvalidParameter: a name that is not a metric's.
    """
    names = _unique(name.strip() for spelling in _as_list(requested) for name in spelling.split(",") if name.strip())
    if unknown := [name for name in names if name not in METRICS]:
        raise InvalidParameter(f"unknown metric '{unknown[0]}'; the metrics are {', '.join(METRICS)} (GET /v1/metrics)")
    return names


METRIC_PARAMETERS = (
    "features_in_step",
    "nr_samples",
    "patch_size",
    "regions_evaluation",
    "nr_runs",
    "subset_size",
    "normalise",
    "abs",
)
"""The metrics' parameters a request may set, under Quantus's names."""


def resolve_metric_parameters(
    metrics: tuple[str, ...], values: dict[str, Any], input_size: tuple[int, int]
) -> dict[str, Parameters]:
    """Each named metric's parameters: Quantus's defaults, and those the request sets (`METRIC_PARAMETERS`) for
    every metric that takes them.

    Raises:
        InvalidParameter: a metric parameter that no named metric takes, or a value the input does not admit.
    """
    for name in METRIC_PARAMETERS:
        if values.get(name) is not None and not any(name in METRICS[m].parameters for m in metrics):
            takers = [m for m, metric in METRICS.items() if name in metric.parameters]
            raise InvalidParameter(f"'{name}' is a parameter of the metrics {', '.join(takers)}; name one in 'metrics'")
    height, width = input_size
    step, patch, subset = values.get("features_in_step"), values.get("patch_size"), values.get("subset_size")
    if step is not None and (height * width) % step:
        raise InvalidParameter(
            f"features_in_step must divide the input's {height} x {width} = {height * width} pixels (as Quantus "
            f"asserts); {step} does not"
        )
    if patch is not None and patch > min(height, width):
        raise InvalidParameter(f"patch_size is at most the input's side, {min(height, width)}")
    if subset is not None and subset > 3 * height * width:
        raise InvalidParameter(f"subset_size is at most the input's {3 * height * width} values")
    given = {name: values.get(name) for name in METRIC_PARAMETERS}  # not a method's `seed`
    return {name: METRICS[name].with_values(given) for name in metrics}


def resolve_target_box(text: str | None, metrics: tuple[str, ...]) -> tuple[float, float, float, float] | None:
    """`x0,y0,x1,y1` (four non-negative numbers: the schema's pattern) as numbers, for the metrics that need where
    the object is.

    Raises:
        InvalidParameter: x0 >= x1 or y0 >= y1; missing where a metric needs it, or given where none does.
    """
    needing = [name for name in metrics if METRICS[name].needs_region]
    if text is None:
        if needing:
            raise InvalidParameter(
                f"'{needing[0]}' scores the map against where the object is: give target_box=x0,y0,x1,y1"
            )
        return None
    if not needing:
        raise InvalidParameter("'target_box' is for the localisation metrics (metrics=pointing_game, ...)")
    x0, y0, x1, y1 = (float(part) for part in text.split(","))
    if not (x0 < x1 and y0 < y1):
        raise InvalidParameter(f"target_box {text!r}: the numbers are at least 0, with x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def resolve_class(spec: int | str, model: LoadedModel) -> int:
    """A class index from an index or a label (case-insensitive).

    Raises:
        UnknownClass: out of range, unknown or ambiguous label.
    """
    count = model.num_classes
    text = str(spec).strip()
    if isinstance(spec, int) or CLASS_INDEX.fullmatch(text):
        # Over 18 digits is out of range anyway, and int() refuses strings of more than 4300 digits.
        index = spec if isinstance(spec, int) else int(text) if len(text) <= 18 else -1
        if not 0 <= index < count:
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise UnknownClass(f"class index {shown} is out of range; model '{model.name}' has classes 0..{count - 1}")
        return index
    try:
        return model.labels.find(text)
    except AmbiguousLabel as exc:
        raise UnknownClass(f"label '{text}' names several classes {exc.indices}; give the index instead") from None
    except UnknownLabel:
        raise UnknownClass(
            f"unknown class label '{text}' for model '{model.name}'; give an index 0..{count - 1} "
            "or a label (case-insensitive)"
        ) from None


def detection_indices(spec: Any, max_count: int) -> tuple[int, ...] | None:
    """Detection indices from `detection` (integers, or text of comma-separated integers); None when not given.

    Raises:
        InvalidParameter: a value that is not a whole number >= 0, or more than `max_count` of them.
    """
    if spec is None:
        return None
    indices: list[int] = []
    for value in _as_list(spec):
        for text in str(value).split(","):
            text = text.strip()
            if not text.isascii() or not text.isdigit() or len(text) > 9:
                shown = text if len(text) <= 24 else text[:20] + "..."
                raise InvalidParameter(f"'detection' takes detection indices (whole numbers >= 0), not '{shown}'")
            indices.append(int(text))
    if len(indices) > max_count:
        raise InvalidParameter(f"at most {max_count} classes per request (detections, here)")
    return _unique(indices)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _unique(items: Any) -> tuple:
    return tuple(dict.fromkeys(items))
