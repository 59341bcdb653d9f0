"""Building the JSON answers of predict and explain from a worker's `JobResult` (runs in the CPU pool)."""

import torch

from api_schemas import ClassRef, Explanation, ExplainResponse, MapData, PredictResponse, TopClass
from model_store import LoadedModel
from service.encoding import encode_base64, encode_overlay_png
from service.imaging import DecodedImage
from service.jobs import JobResult
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


def build_explain(
    model: LoadedModel,
    image: DecodedImage,
    result: JobResult,
    plan: ExplainPlan,
    top_k: int,
    timings: dict[str, float],
) -> ExplainResponse:
    explanations = []
    for item in result.maps:
        explanations.append(
            Explanation(
                method=item.method,
                class_=ClassRef(index=item.class_index, label=model.labels[item.class_index]),
                layer=item.layer,
                map=MapData(shape=list(item.map.shape), data=item.map.tolist()) if "map" in plan.include else None,
                overlay_png=(
                    encode_base64(encode_overlay_png(image.display, item.map, plan.colormap, plan.alpha))
                    if "overlay" in plan.include
                    else None
                ),
            )
        )
    return ExplainResponse(
        model=model.name,
        input_size=list(model.preprocessing.input_size),
        logits=result.logits.tolist() if "logits" in plan.include else None,
        top_classes=top_classes(model, result.logits, top_k),
        explanations=explanations,
        timings_ms=timings,
    )
