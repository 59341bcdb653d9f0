"""Faithfulness of an explanation, from batched forward passes (runs in the worker).

- confidence change: p_c(image with only the top 20% of the map kept) - p_c(image), the other pixels set to
  the normalisation mean (0), as pytorch-grad-cam's `CamMultImageConfidenceChange` with a binary map.
- deletion AUC (Petsiuk et al. 2018, RISE): p_c while the most salient pixels are removed (set to the mean)
  in `steps` equal steps; lower is more faithful.
- insertion AUC (same paper): p_c while the most salient pixels are put back into a blurred copy; higher is
  more faithful.
Cost: 1 + 2 (steps + 1) forward passes per explanation. p_c is the softmax probability of class c, or the
sigmoid of its logit for a multilabel model.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from service.imaging.encoding import normalize_map
from service.methods.passes import PassRunner, Steps

KEEP_FRACTION = 0.2


@dataclass(frozen=True)
class FaithfulnessScores:
    confidence_change: float
    deletion_auc: float
    insertion_auc: float


def evaluation_passes(steps: int) -> int:
    return 1 + 2 * (steps + 1)


def evaluate_map(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    steps: int,
    multilabel: bool = False,
) -> Steps[FaithfulnessScores]:
    """Score one map: (3, H, W) normalised image, its (K,) logits from the shared pass, (h, w) raw map."""
    height, width = image.shape[-2:]
    heat = torch.from_numpy(normalize_map(raw_map)).to(image.device)
    heat = F.interpolate(heat[None, None], size=(height, width), mode="bilinear")
    order = heat.flatten().argsort(descending=True)
    pixels = order.numel()
    keep = torch.zeros(pixels, device=image.device)
    keep[order[: int(round(KEEP_FRACTION * pixels))]] = 1
    blurred = gaussian_blur(image, kernel_size=[11, 11], sigma=[5.0, 5.0])

    inputs = [image * keep.view(1, height, width)]
    for step in range(steps + 1):
        shown = torch.zeros(pixels, device=image.device)
        shown[order[: pixels * step // steps]] = 1
        shown = shown.view(1, height, width)
        inputs.append(image * (1 - shown))  # deletion
        inputs.append(blurred * (1 - shown) + image * shown)  # insertion
    logits_after = yield from runner.logits(torch.stack(inputs))
    if multilabel:
        probabilities, original = logits_after[:, class_index].sigmoid(), logits[class_index].sigmoid()
    else:
        probabilities = torch.softmax(logits_after, dim=1)[:, class_index]
        original = torch.softmax(logits, dim=0)[class_index]
    deletion, insertion = probabilities[1::2], probabilities[2::2]
    return FaithfulnessScores(
        confidence_change=float(probabilities[0] - original),
        deletion_auc=float(torch.trapezoid(deletion, dx=1 / steps)),
        insertion_auc=float(torch.trapezoid(insertion, dx=1 / steps)),
    )
