"""Building the JSON answers of predict and explain from a worker's `JobResult` (runs in the CPU pool, with numpy
only: the result's tensors are on the CPU and are read as arrays, never computed on)."""

import base64

import numpy as np

from api_schemas import (
    ClassRef,
    Evaluation,
    ExplainResponse,
    Explanation,
    MapData,
    PredictResponse,
    TopClass,
)
from model_store import LoadedModel
from service.engine.work import JobResult, MapResult
from service.http.parameters import ExplainPlan
from service.imaging.decoding import DecodedImage
from service.imaging.encoding import encode_base64, encode_overlay
from service.methods.localization import localize


def top_classes(model: LoadedModel, logits: np.ndarray, k: int) -> list[TopClass]:
    """The k best classes of (K,) logits, with softmax probabilities."""
    logits = np.asarray(logits)
    exponentials = np.exp(logits.astype(np.float64) - logits.max())
    probabilities = exponentials / exponentials.sum()
    best = np.argsort(-logits, kind="stable")[: min(k, len(logits))]
    return [
        TopClass(index=int(i), label=model.labels[i], logit=float(logits[i]), probability=float(probabilities[i]))
        for i in best
    ]


def build_predict(model: LoadedModel, result: JobResult, top_k: int, timings: dict[str, float]) -> PredictResponse:
    return PredictResponse(
        model=model.name,
        input_size=list(model.preprocessing.input_size),
        logits=result.logits.tolist(),
        top_classes=top_classes(model, result.logits, top_k),
        timings_ms=timings,
    )


def encode_map(raw: np.ndarray, encoding: str) -> MapData:
    """(h, w) raw map -> nested lists, or base64 of little-endian float32 (row-major)."""
    raw = np.asarray(raw, dtype="<f4")
    if encoding == "base64":
        return MapData(shape=list(raw.shape), data_base64=base64.b64encode(raw.tobytes()).decode("ascii"))
    return MapData(shape=list(raw.shape), data=raw.tolist())


def build_explanation(model: LoadedModel, image: DecodedImage, item: MapResult, plan: ExplainPlan) -> Explanation:
    return Explanation(
        method=item.method,
        class_=ClassRef(index=item.class_index, label=model.labels[item.class_index]),
        layer=item.layer,
        map=encode_map(item.map, plan.map_encoding) if "map" in plan.include else None,
        **overlay_fields(image, item, plan),
        bbox=localize(item.map, image.size, plan.bbox_threshold) if plan.bbox_threshold is not None else None,
        evaluation=Evaluation(**vars(item.evaluation)) if item.evaluation is not None else None,
    )


def overlay_fields(image: DecodedImage, item: MapResult, plan: ExplainPlan) -> dict[str, str]:
    """{"overlay_<format>": base64 of the overlay}, or nothing when the overlay is not asked for."""
    if "overlay" not in plan.include:
        return {}
    encoded = encode_overlay(image.display, np.asarray(item.map), plan.colormap, plan.alpha, plan.overlay_format)
    return {f"overlay_{plan.overlay_format}": encode_base64(encoded)}


def build_explain(
    model: LoadedModel,
    image: DecodedImage,
    result: JobResult,
    plan: ExplainPlan,
    top_k: int,
    timings: dict[str, float],
) -> ExplainResponse:
    return ExplainResponse(
        model=model.name,
        input_size=list(model.preprocessing.input_size),
        logits=np.asarray(result.logits).tolist() if "logits" in plan.include else None,
        top_classes=top_classes(model, result.logits, top_k),
        explanations=[build_explanation(model, image, item, plan) for item in result.maps],
        timings_ms=timings,
    )
