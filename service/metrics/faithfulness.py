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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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


def faithfulness_correlation(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `FaithfulnessCorrelation` (Bhatt et al. 2020) of one map: `nr_runs` times, a random subset
    of `subset_size` of the input's values (each channel of each pixel apart, as Quantus broadcasts the
    attribution over the channels) is set to the input's smallest value ("black"); the Pearson correlation
    between the attribution's sums over the subsets and the class logit's drops. The subsets are numpy's
    legacy draws seeded with `seed`, drawn as Quantus draws them from the global generator (seed that with
    `np.random.seed(seed)` to reproduce): per run, `choice(n, subset_size, replace=False)`, then one uniform
    number that Quantus's baseline helper draws on every call. Normalising the attribution (Quantus's default)
    does not change a correlation."""
    channels, height, width = image.shape
    heat = F.interpolate(raw_map.float()[None, None].to(image.device), size=(height, width), mode="bilinear")
    attribution = heat[0].expand(channels, height, width).flatten().double()
    flat = image.flatten()
    draws = np.random.RandomState(int(parameters["seed"]))
    subsets = []
    for _ in range(int(parameters["nr_runs"])):
        subsets.append(torch.from_numpy(draws.choice(flat.numel(), int(parameters["subset_size"]), replace=False)))
        draws.uniform(size=1)  # Quantus's baseline helper draws a "uniform" baseline on every call, used or not
    perturbed = flat.repeat(len(subsets), 1)
    for row, subset in enumerate(subsets):
        perturbed[row, subset.to(image.device)] = flat.min()
    logits_after = yield from runner.logits(perturbed.view(len(subsets), channels, height, width))
    drops = (logits[class_index] - logits_after[:, class_index]).double().cpu().numpy()
    sums = torch.stack([attribution[subset.to(image.device)].sum() for subset in subsets]).cpu().numpy()
    return float(np.corrcoef(sums, drops)[0, 1])


MODEL_METRICS: dict[str, Callable[..., Steps[float]]] = {"faithfulness_correlation": faithfulness_correlation}
"""The metrics that run through the model, by name, each with the `Metric` entry that describes it
(`service.metrics.model_metrics`)."""
