"""A detection model's answer and the score its explanations differentiate.

torchvision's detectors answer, per image, the boxes they keep after non-maximum suppression with a label and a
score each (`{"boxes": (N, 4), "labels": (N,), "scores": (N,)}`, best first, boxes in the input's pixels as
x0, y0, x1, y1). The answer lists those whose score reaches the request's `score_threshold`; each explanation
targets one of them with pytorch-grad-cam's `FasterRCNNBoxScoreTarget`: among the model's boxes, the one that
overlaps the detection's box most, if the overlap passes `IOU_THRESHOLD` and the label is the detection's, scores
its IoU with the box plus its score (the box a constant, the model's boxes and scores differentiable).
"""

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

IOU_THRESHOLD = 0.5
"""pytorch-grad-cam's tutorial value for `FasterRCNNBoxScoreTarget`."""

Output = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Detection:
    """One kept box of an image, in the model's input pixels (x0, y0, x1, y1)."""

    box: tuple[float, float, float, float]
    label: int
    score: float


def kept_detections(output: Output, score_threshold: float) -> list[Detection]:
    """The image's detections whose score reaches `score_threshold`, in the model's order (best first)."""
    boxes, labels, scores = (output[key].detach().float().cpu() for key in ("boxes", "labels", "scores"))
    return [
        Detection(box=tuple(float(v) for v in box), label=int(label), score=float(score))  # type: ignore[arg-type]
        for box, label, score in zip(boxes, labels, scores, strict=True)
        if score >= score_threshold
    ]


def box_score(output: Output, detection: Detection, iou_threshold: float = IOU_THRESHOLD) -> torch.Tensor:
    """pytorch-grad-cam's `FasterRCNNBoxScoreTarget([label], [box], iou_threshold)` of one image's output: a
    scalar, 0 when no box of the output overlaps the detection's enough with its label (a 0 still joined to the
    output's graph, so that its gradient is zero rather than missing: a perturbed input may lose the box)."""
    boxes = output["boxes"]
    none = output["scores"].sum() * 0.0
    if len(boxes) == 0:
        return none
    ious = box_iou(torch.tensor([detection.box], device=boxes.device, dtype=boxes.dtype), boxes)[0]
    best = int(ious.argmax())
    if float(ious[best].detach()) > iou_threshold and int(output["labels"][best]) == detection.label:
        return ious[best] + output["scores"][best]
    return none
