"""What each client method sends: one `Call` per API operation, built the same way for the sync and async
clients; parameters are validated by the `api_schemas` models before anything is sent."""

import io
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypedDict
from urllib.parse import quote

from api_schemas import ExplainParameters
from api_schemas.explain import Canonize, LRPComposite
from api_schemas.features import ActivationsParameters
from api_schemas.jobs import VisualizationRequest

ImageInput = str | os.PathLike | bytes | bytearray | IO[bytes] | Any
"""A path, the file's bytes, a binary file object, or a PIL image (sent as PNG)."""


class ExplainOptions(TypedDict, total=False):
    """The explain parameters beside `method` and `classes` (see `api_schemas.ExplainParameters` and README)."""

    top_k: int
    threshold: float
    detection: int | list[int]
    score_threshold: float
    concept: str
    layer: str
    colormap: Literal["jet", "viridis", "inferno", "turbo"]
    alpha: float
    include: str | list[str]
    overlay_format: Literal["png", "jpeg", "webp"]
    overlay_max_side: int
    map_encoding: Literal["list", "base64"]
    bbox: bool
    bbox_threshold: float
    evaluate: bool
    metrics: str | list[str]
    target_box: str
    features_in_step: int
    nr_samples: int
    patch_size: int
    regions_evaluation: int
    nr_runs: int
    subset_size: int
    normalise: bool
    abs: bool
    samples: int
    noise: float
    seed: int
    steps: int
    baseline: Literal["black", "mean"]
    window: int
    stride: int
    fill: Literal["black", "mean"]
    head_fusion: Literal["mean", "max", "min"]
    discard_ratio: float
    composite: LRPComposite
    canonize: Canonize


class VisualizationOptions(TypedDict, total=False):
    steps: int
    size: list[int]
    seed: int
    lr: float
    fourier: bool
    decorrelate: bool
    transforms: bool


@dataclass(frozen=True)
class Call:
    method: Literal["GET", "POST", "DELETE"]
    path: str
    params: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    """Safe to send again after a broken connection: it changes nothing on the service, or it creates a job with
    an `Idempotency-Key` (sent again, it returns the job the first one created)."""


def read_image(image: ImageInput) -> tuple[str, bytes]:
    """(file name, bytes) of an image input."""
    if isinstance(image, bytes | bytearray):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    if hasattr(image, "read"):
        return Path(getattr(image, "name", "image")).name, image.read()
    if hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "image.png", buffer.getvalue()
    raise TypeError(f"an image is a path, bytes, a binary file or a PIL image, not {type(image).__name__}")


def form_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validated parameters as multipart form fields: lists repeat, booleans are `true`/`false`, None is left out."""

    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return {
        name: [text(v) for v in value] if isinstance(value, list) else text(value)
        for name, value in values.items()
        if value is not None
    }


def model_path(model: str, action: str = "") -> str:
    return f"/v1/models/{quote(model, safe='')}" + (f"/{action}" if action else "")


def job_path(job_id: str, action: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}" + (f"/{action}" if action else "")


def explain_parameters(
    method: str | Sequence[str] | None,
    classes: int | str | Sequence[int | str] | None,
    **options: Any,
) -> dict[str, Any]:
    """The explain parameters, validated by `api_schemas.ExplainParameters` (unknown names raise TypeError)."""
    values = {"method": _listed(method), "class": _listed(classes), **options}
    allowed = set(ExplainParameters.model_fields) | {"class"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise TypeError(f"unknown explain parameters {unknown}")
    ExplainParameters.model_validate(values)
    return values


def _listed(value: Any) -> Any:
    if value is None or isinstance(value, str | int):
        return value
    return list(value)


def image_post(
    path: str,
    image: ImageInput,
    fields: dict[str, Any],
    headers: dict[str, str] | None = None,
    second_files: dict[str, ImageInput | None] | None = None,
) -> Call:
    """A multipart POST of `image` (and of those `second_files` that are given: an embedding model's `reference`
    image, a segmentation model's `mask`) with these fields."""
    files = {"image": read_image(image)}
    files.update({part: read_image(file) for part, file in (second_files or {}).items() if file is not None})
    return Call(
        "POST",
        path,
        data=form_fields(fields),
        files={part: (name, data, "application/octet-stream") for part, (name, data) in files.items()},
        headers=headers or {},
    )


def predict(
    model: str, image: ImageInput, threshold: float | None = None, score_threshold: float | None = None
) -> Call:
    given = {"threshold": threshold, "score_threshold": score_threshold}
    return image_post(model_path(model, "predict"), image, {k: v for k, v in given.items() if v is not None})


def job_headers(idempotency_key: str | None) -> dict[str, str]:
    """The `Idempotency-Key` of a request that creates a job: the caller's, or a new UUID. Every retry of the
    call sends the same key, so that a request whose 202 was lost is not run twice."""
    return {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}


def explain(
    model: str,
    image: ImageInput,
    parameters: dict[str, Any],
    as_job: bool = False,
    idempotency_key: str | None = None,
    reference: ImageInput | None = None,
    mask: ImageInput | None = None,
) -> Call:
    headers = {"Prefer": "respond-async", **job_headers(idempotency_key)} if as_job else None
    return image_post(model_path(model, "explain"), image, parameters, headers, {"reference": reference, "mask": mask})


def activations(model: str, image: ImageInput, layer: str | None, top_n: int | None) -> Call:
    ActivationsParameters.model_validate({"layer": layer, "top_n": top_n})
    return image_post(model_path(model, "activations"), image, {"layer": layer, "top_n": top_n})


def filters(model: str, layer: str | None) -> Call:
    return Call("GET", model_path(model, "filters"), params={"layer": layer} if layer else None)


def visualize(
    model: str, objective: dict[str, Any], options: dict[str, Any], idempotency_key: str | None = None
) -> Call:
    body = {"objective": objective, **{k: v for k, v in options.items() if v is not None}}
    VisualizationRequest.model_validate(body)
    return Call("POST", model_path(model, "visualizations"), json=body, headers=job_headers(idempotency_key))


def objective(
    class_: int | str | None, layer: str | None, channel: int | None, x: int | None, y: int | None
) -> dict[str, Any]:
    """The objective of a visualization: a class; a channel of a layer; or one neuron of it (with x or y)."""
    if class_ is not None:
        if layer is not None or channel is not None:
            raise TypeError("give either a class or a layer and channel, not both")
        return {"kind": "class", "class": class_}
    if layer is None or channel is None:
        raise TypeError("a visualization needs a class, or a layer and a channel")
    if x is None and y is None:
        return {"kind": "channel", "layer": layer, "channel": channel}
    return {"kind": "neuron", "layer": layer, "channel": channel, "x": x, "y": y}


def job_status(job_id: str) -> Call:
    """A job's status, with its result once it has succeeded."""
    return Call("GET", job_path(job_id), params={"result": "true"})


def get(path: str) -> Call:
    return Call("GET", path)


def delete(path: str) -> Call:
    return Call("DELETE", path)
