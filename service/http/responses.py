"""Building the JSON answers of predict and explain from a worker's `JobResult` (runs in the CPU pool, with numpy
only: the result's tensors are on the CPU and are read as arrays, never computed on)."""

import base64
import math

import numpy as np

from api_schemas import (
    ClassRef,
    DetectedBox,
    Evaluation,
    ExplainResponse,
    Explanation,
    MapData,
    MetricValue,
    PredictResponse,
    Segmentation,
    SegmentShare,
    TopClass,
)
from model_store import LoadedModel
from service.engine.detections import Detection
from service.engine.work import JobResult, MapResult
from service.http.parameters import ExplainPlan
from service.imaging.decoding import DecodedImage
from service.imaging.encoding import encode_base64, encode_class_mask, encode_overlay
from service.methods.localization import localize
from service.metrics import METRICS
from service.metrics.attribution import attribution, box_region


def class_probabilities(model: LoadedModel, logits: np.ndarray) -> np.ndarray:
    """(K,) logits -> (K,) probabilities: softmax over the classes, or each label's sigmoid (multilabel)."""
    logits = np.asarray(logits, dtype=np.float64)
    if model.multilabel:
        return 1 / (1 + np.exp(-logits))
    exponentials = np.exp(logits - logits.max())
    return exponentials / exponentials.sum()


def top_classes(model: LoadedModel, logits: np.ndarray, k: int, threshold: float = 0.0) -> list[TopClass]:
    """The k best classes of (K,) logits with their probabilities, those that reach `threshold`; none for an
    embedding model, whose outputs are no classes, a segmentation or a detection model (see `segmentation` and
    `detected_boxes`)."""
    if model.task in ("embedding", "segmentation", "detection"):
        return []
    logits = np.asarray(logits)
    probabilities = class_probabilities(model, logits)
    best = np.argsort(-logits, kind="stable")[: min(k, len(logits))]
    return [
        TopClass(index=int(i), label=model.labels[i], logit=float(logits[i]), probability=float(probabilities[i]))
        for i in best
        if probabilities[i] >= threshold
    ]


def positive_classes(model: LoadedModel, logits: np.ndarray, threshold: float | None) -> list[TopClass] | None:
    """A multilabel model's labels whose sigmoid reaches `threshold`, best first; None for classification."""
    if threshold is None:
        return None
    return top_classes(model, logits, len(logits), threshold)


def segmentation(model: LoadedModel, result: JobResult, image: DecodedImage, max_side: int) -> Segmentation | None:
    """A segmentation model's predicted classes as a palette PNG at the image's size (long side at most
    `max_side`, as the overlays) and each class's share of the pixels; None for the other tasks."""
    if result.mask is None:
        return None
    mask = np.asarray(result.mask, dtype=np.uint8)
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = np.bincount(mask.ravel(), minlength=model.num_classes)
    present = [int(c) for c in np.argsort(-pixels, kind="stable") if pixels[c] > 0]
    return Segmentation(
        mask_png=encode_base64(encode_class_mask(mask, size)),
        size=list(size),
        classes=[SegmentShare(index=c, label=model.labels[c], share=float(pixels[c] / mask.size)) for c in present],
    )


def image_box(
    model: LoadedModel, detection: Detection, image_size: tuple[int, int], size: tuple[int, int]
) -> list[float]:
    """A detection's box from the model's input pixels to those of a picture of (width, height) `size` of an image
    sent at `image_size`."""
    width, height = model.preprocessing.content_size(image_size)
    x0, y0, x1, y1 = detection.box
    sx, sy = size[0] / width, size[1] / height
    return [x0 * sx, y0 * sy, x1 * sx, y1 * sy]


def visible_map(model: LoadedModel, image_size: tuple[int, int], item: MapResult) -> tuple[np.ndarray, list[float]]:
    """The rows and columns of `item`'s raw map that cover the image (sent at `image_size`), and the fraction (of
    their height, of their width) that the image covers, from the top-left corner: the whole map and [1, 1],
    except for a letterboxed detector's maps, whose input is padded at the right and bottom (and whose layers see
    it padded again, to a multiple of 32)."""
    raw = np.asarray(item.map)
    height, width = raw.shape
    fy, fx = model.preprocessing.image_extent(image_size)
    if item.layer is not None:
        fy, fx = fy * model.grid_extent[0], fx * model.grid_extent[1]
    rows, cols = (max(1, math.ceil(cells * f - 1e-6)) for cells, f in ((height, fy), (width, fx)))
    return raw[:rows, :cols], [height * fy / rows, width * fx / cols]


def detected_boxes(model: LoadedModel, result: JobResult, image: DecodedImage) -> list[DetectedBox] | None:
    """A detection model's detections, boxes in the pixels of the image as sent; None for the other tasks."""
    if result.detections is None:
        return None
    return [
        DetectedBox(
            index=i,
            class_=ClassRef(index=d.label, label=model.labels[d.label]),
            score=d.score,
            box=image_box(model, d, image.size, image.size),
        )
        for i, d in enumerate(result.detections)
    ]


def build_predict(
    model: LoadedModel,
    image: DecodedImage,
    result: JobResult,
    top_k: int,
    threshold: float | None,
    max_side: int,
    timings: dict[str, float],
) -> PredictResponse:
    return PredictResponse(
        model=model.name,
        task=model.task,
        input_size=list(model.preprocessing.input_size),
        logits=result.logits.tolist() if np.asarray(result.logits).size else None,  # none kept per pixel or box
        top_classes=top_classes(model, result.logits, top_k),
        positive_classes=positive_classes(model, result.logits, threshold),
        detections=detected_boxes(model, result, image),
        segmentation=segmentation(model, result, image, max_side),
        timings_ms=timings,
    )


def encode_map(raw: np.ndarray, encoding: str, extent: list[float]) -> MapData:
    """(h, w) raw map -> nested lists, or base64 of little-endian float32 (row-major), with the fraction of it
    that the image covers."""
    raw = np.asarray(raw, dtype="<f4")
    if encoding == "base64":
        data = {"data_base64": base64.b64encode(raw.tobytes()).decode("ascii")}
    else:
        data = {"data": raw.tolist()}
    return MapData(shape=list(raw.shape), image_extent=extent, **data)


def build_explanation(
    model: LoadedModel, image: DecodedImage, item: MapResult, plan: ExplainPlan, result: JobResult
) -> Explanation:
    """One map's explanation; a detection model's map targets the detection `item.class_index` of `result`."""
    detection = result.detections[item.class_index] if result.detections is not None else None
    class_index = detection.label if detection is not None else item.class_index
    raw, extent = visible_map(model, image.size, item)
    return Explanation(
        method=item.method,
        class_=None if model.embedding else ClassRef(index=class_index, label=model.labels[class_index]),
        detection=item.class_index if detection is not None else None,
        layer=item.layer,
        map=encode_map(raw, plan.map_encoding, extent) if "map" in plan.include else None,
        **overlay_fields(model, image, raw, extent, plan, detection),
        bbox=localize(raw, image.size, plan.bbox_threshold, extent) if plan.bbox_threshold is not None else None,
        evaluation=Evaluation(**vars(item.evaluation)) if item.evaluation is not None else None,
        metrics=metric_values(model, image, item, raw, extent, plan) if plan.metrics else None,
    )


def metric_values(
    model: LoadedModel, image: DecodedImage, item: MapResult, raw: np.ndarray, extent: list[float], plan: ExplainPlan
) -> dict[str, MetricValue]:
    """The plan's metrics of `item`'s map: those the worker ran through the model, and the others from the visible
    `raw` map, upsampled to the image's size in the model's input (and of the target box there, for the
    localisation metrics)."""
    a = attribution(raw, model.preprocessing.content_size(image.size), extent)
    region = box_region(plan.target_box, image.size, a.shape) if plan.target_box is not None else None
    values = {}
    for name, parameters in plan.metrics.items():
        metric = METRICS[name]
        value = item.metric_values[name] if metric.runs_model else metric.score(a, region, parameters)
        values[name] = MetricValue(value=value if math.isfinite(value) else None, parameters=parameters)
    return values


def overlay_fields(
    model: LoadedModel,
    image: DecodedImage,
    raw: np.ndarray,
    extent: list[float],
    plan: ExplainPlan,
    detection: Detection | None = None,
) -> dict[str, str]:
    """{"overlay_<format>": base64 of the overlay of the visible `raw` map (with the detection's box drawn)}, or
    nothing when the overlay is not asked for."""
    if "overlay" not in plan.include:
        return {}
    height, width = image.display.shape[:2]
    box = image_box(model, detection, image.size, (width, height)) if detection is not None else None
    encoded = encode_overlay(image.display, raw, plan.colormap, plan.alpha, plan.overlay_format, box=box, extent=extent)
    return {f"overlay_{plan.overlay_format}": encode_base64(encoded)}


# What the answer's parts weigh, for the estimate made before any work (upper-ish bounds, as JSON text):
FLOAT_JSON_BYTES = 24  # a float32 as JSON text with its separator: "-0.0012345678901234567, "
OVERLAY_BYTES_PER_RAW_BYTE = {"png": 1.0, "jpeg": 0.25, "webp": 0.25}
"""Encoded overlay bytes per byte of raw RGB pixels: lossless PNG of a photo's overlay is at most about its raw
size (measured 0.47 for a 640 x 480 photo); JPEG at quality 90 and WebP at 85 are about 10x smaller."""
EXPLANATION_OVERHEAD_BYTES = 512  # method, class, label, layer, box, scores and the JSON around them


def estimate_explain_bytes(plan: ExplainPlan, model: LoadedModel, overlay_size: tuple[int, int] | None) -> int:
    """About how many bytes the explain answer of `plan` will take as JSON, from the plan alone (before any work):
    every explanation's map (nested lists or base64 float32) and overlay (base64 of its format at `overlay_size`,
    (width, height)), and the logits."""
    total = 4096 + (len(model.labels.names) * FLOAT_JSON_BYTES if "logits" in plan.include else 0)
    for method in plan.methods:
        if method.input_resolution or plan.layer is None:
            height, width = model.preprocessing.input_size
        else:
            height, width = model.layer_shapes[plan.layer][-2:]
        explanation = EXPLANATION_OVERHEAD_BYTES
        if "map" in plan.include:
            cells = height * width
            explanation += cells * 4 * 4 // 3 if plan.map_encoding == "base64" else cells * FLOAT_JSON_BYTES
        if "overlay" in plan.include and overlay_size is not None:
            raw = overlay_size[0] * overlay_size[1] * 3
            explanation += int(raw * OVERLAY_BYTES_PER_RAW_BYTE[plan.overlay_format] * 4 / 3)
        total += explanation * plan.class_count
    return total


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
        task=model.task,
        input_size=list(model.preprocessing.input_size),
        logits=np.asarray(result.logits).tolist()
        if "logits" in plan.include and np.asarray(result.logits).size
        else None,
        top_classes=top_classes(model, result.logits, top_k),
        positive_classes=positive_classes(model, result.logits, plan.threshold),
        detections=detected_boxes(model, result, image),
        segmentation=segmentation(model, result, image, plan.overlay_max_side),
        similarity=result.similarity,
        explanations=[build_explanation(model, image, item, plan, result) for item in result.maps],
        timings_ms=timings,
    )
