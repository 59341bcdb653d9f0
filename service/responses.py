"""Building the JSON answers of predict and explain from a worker's `JobResult` (runs in the CPU pool)."""

import base64

import torch

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
from service.encoding import encode_base64, encode_overlay_png
from service.imaging import DecodedImage
from service.jobs import JobResult, MapResult
from service.localization import localize
from service.parameters import ExplainPlan


def top_classes(model: LoadedModel, logits: torch.Tensor, k: int) -> list[TopClass]:
    """The k best classes of (K,) logits, with softmax probabilities."""
    probabilities = torch.softmax(logits.double(), dim=0)
    values, indices = torch.topk(logits, k=min(k, logits.shape[0]))
    return [
        TopClass(index=i, label=model.labels[i], logit=float(v), probability=float(probabilities[i]))
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def build_predict(model: LoadedModel, result: JobResult, top_k: int, timings: dict[str, float]) -> PredictResponse:
    return PredictResponse(
        model=model.name,
        input_size=list(model.preprocessing.input_size),
        logits=result.logits.tolist(),
        top_classes=top_classes(model, result.logits, top_k),
        timings_ms=timings,
    )


def encode_map(raw: torch.Tensor, encoding: str) -> MapData:
    """(h, w) raw map -> nested lists, or base64 of little-endian float32 (row-major)."""
    if encoding == "base64":
        data = raw.float().contiguous().numpy().astype("<f4").tobytes()
        return MapData(shape=list(raw.shape), data_base64=base64.b64encode(data).decode("ascii"))
    return MapData(shape=list(raw.shape), data=raw.tolist())


def build_explanation(model: LoadedModel, image: DecodedImage, item: MapResult, plan: ExplainPlan) -> Explanation:
    return Explanation(
        method=item.method,
        class_=ClassRef(index=item.class_index, label=model.labels[item.class_index]),
        layer=item.layer,
        map=encode_map(item.map, plan.map_encoding) if "map" in plan.include else None,
        overlay_png=(
            encode_base64(encode_overlay_png(image.display, item.map, plan.colormap, plan.alpha))
            if "overlay" in plan.include
            else None
        ),
        bbox=localize(item.map, image.size, plan.bbox_threshold) if plan.bbox_threshold is not None else None,
        evaluation=Evaluation(**vars(item.evaluation)) if item.evaluation is not None else None,
    )


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
        logits=result.logits.tolist() if "logits" in plan.include else None,
        top_classes=top_classes(model, result.logits, top_k),
        explanations=[build_explanation(model, image, item, plan) for item in result.maps],
        timings_ms=timings,
    )
