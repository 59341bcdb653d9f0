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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats
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


def region_perturbation(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `RegionPerturbation` (Samek et al. 2015) of one map, "morf": the input's patches of
    `patch_size` (all channels), most relevant first (the attribution's sum over each), are set to the input's
    smallest value one more at a time for `regions_evaluation` steps; the curve is the class probability's drop
    after each step (softmax, as Quantus's `softmax=True` default for this metric, for a multilabel model too),
    and the value its area (Quantus's `get_auc_score`: trapezoids of width 1)."""
    ranks, count = _patch_ranks(raw_map, image, parameters)
    count = min(count, int(parameters["regions_evaluation"]))
    after = yield from _patches_removed(runner, image, ranks, count)
    original = torch.softmax(logits.double(), dim=0)[class_index]
    curve = (original - torch.softmax(after.double(), dim=1)[:, class_index]).cpu().numpy()
    return float(np.trapezoid(curve, dx=1))


def selectivity(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `Selectivity` (Montavon et al. 2018) of one map: every patch of `patch_size`, most
    relevant first, set to the input's smallest value one more at a time; the curve is the class probability
    (softmax, Quantus's default here) after each step, and the value its area (`get_auc_score`; lower is better:
    the probability falls fast)."""
    ranks, count = _patch_ranks(raw_map, image, parameters)
    after = yield from _patches_removed(runner, image, ranks, count)
    return float(np.trapezoid(torch.softmax(after.double(), dim=1)[:, class_index].cpu().numpy(), dx=1))


def pixel_flipping(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `PixelFlipping` (Bach et al. 2015) of one map: the input's values (channel, row, column),
    most relevant first, set to the input's smallest value `features_in_step` more at a time until none is
    left; the curve is the class probability (softmax, Quantus's default here) after each step, and the value
    its area (Quantus's `return_auc_per_sample`: trapezoids of width 1; lower is better)."""
    place, _ = _value_ranks(raw_map, image, parameters)
    step = int(parameters["features_in_step"])
    after = yield from _perturbed(
        runner, image, math.ceil(place.numel() / step), lambda steps: place[None] < _column(steps + 1) * step
    )
    return float(np.trapezoid(torch.softmax(after.double(), dim=1)[:, class_index].cpu().numpy(), dx=1))


def faithfulness_estimate(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `FaithfulnessEstimate` (Alvarez-Melis & Jaakkola 2018) of one map: the input's values,
    most relevant first, in groups of `features_in_step`; each group alone set to the input's smallest value;
    the Pearson correlation between the groups' attribution sums and the class logit's drops (logits: Quantus's
    `softmax=False` default here)."""
    place, flat = _value_ranks(raw_map, image, parameters)
    group = place // int(parameters["features_in_step"])
    count = int(group.max()) + 1
    after = yield from _perturbed(runner, image, count, lambda steps: group[None] == _column(steps))
    drops = (logits[class_index] - after[:, class_index]).double().cpu().numpy()
    sums = np.bincount(group.flatten().cpu().numpy(), weights=flat.astype(np.float64), minlength=count)
    return float(np.corrcoef(sums, drops)[0, 1])


def monotonicity_correlation(
    runner: PassRunner,
    image: torch.Tensor,
    logits: torch.Tensor,
    class_index: int,
    raw_map: torch.Tensor,
    parameters: dict[str, float | bool | str],
) -> Steps[float]:
    """Quantus 0.6.0's `MonotonicityCorrelation` (Nguyen & Martinez 2020) of one map: the input's values, least
    relevant first (the absolute attribution: Quantus's `abs=True` default here), in groups of
    `features_in_step`; each group alone set `nr_samples` times to a uniform draw in [0, 1); per group, the mean
    squared change of the class probability (softmax) over the probability squared (1 below `eps`); the value
    is the Spearman correlation between the groups' attribution sums and those changes. The draws are numpy's
    legacy generator seeded with `seed`, one `uniform(size=1)` per perturbation in Quantus's order (group, then
    sample), as Quantus draws them from the global generator: seed it with `np.random.seed(seed)` to
    reproduce."""
    place, flat = _value_ranks(raw_map, image, parameters, descending=False)
    step, samples = int(parameters["features_in_step"]), int(parameters["nr_samples"])
    group = place // step
    count = int(group.max()) + 1
    draws = np.random.RandomState(int(parameters["seed"]))
    fills = torch.tensor([draws.uniform(size=1)[0] for _ in range(count * samples)], dtype=image.dtype)
    after = yield from _perturbed(
        runner, image, count * samples, lambda indices: group[None] == _column(indices // samples), fills
    )
    probability = torch.softmax(logits.float(), dim=0)[class_index].item()
    changed = torch.softmax(after.float(), dim=1)[:, class_index].double().cpu().numpy().reshape(count, samples)
    weight = 1.0 / abs(probability) ** 2 if abs(probability) >= float(parameters["eps"]) else 1.0
    changes = np.mean((changed - probability) ** 2, axis=1) * weight
    order = np.argsort(flat)
    sums = np.array([flat[order[g * step : (g + 1) * step]].sum() for g in range(count)])
    return float(scipy.stats.spearmanr(sums, changes)[0])


def _prepared_heat(raw_map: torch.Tensor, image: torch.Tensor, parameters: dict[str, float | bool | str]) -> np.ndarray:
    """The (H, W) attribution as Quantus prepares it, in float32: upsampled to the input, normalised by its largest
    absolute value (`normalise`), then absolute (`abs`)."""
    height, width = image.shape[1:]
    heat = F.interpolate(raw_map.float()[None, None].cpu(), size=(height, width), mode="bilinear")[0, 0].numpy()
    if parameters["normalise"] and not np.all(heat == 0.0):
        heat = np.divide(heat, np.max(np.abs(heat)))
    return np.abs(heat) if parameters["abs"] else heat


def _value_ranks(
    raw_map: torch.Tensor, image: torch.Tensor, parameters: dict[str, float | bool | str], descending: bool = True
) -> tuple[torch.Tensor, np.ndarray]:
    """Each input value's place (0: the most relevant, or the least where not `descending`) in Quantus's order,
    as a (C, H, W) tensor, and the float32 attribution broadcast over the channels, flat. The order is Quantus's
    bit for bit (`np.argsort` of the float32 attribution, negated when descending), so that ties (the channels
    of one pixel, a rectified map's zeros) fall the same way."""
    flat = np.broadcast_to(_prepared_heat(raw_map, image, parameters), image.shape).reshape(-1)
    order = np.argsort(-flat if descending else flat)
    place = np.empty_like(order)
    place[order] = np.arange(order.size)
    return torch.from_numpy(place.reshape(image.shape)).to(image.device), flat


def _patch_ranks(
    raw_map: torch.Tensor, image: torch.Tensor, parameters: dict[str, float | bool | str]
) -> tuple[torch.Tensor, int]:
    """Each input pixel's patch's place (0: the most relevant) in Quantus's order, as an (H, W) tensor, and the
    number of patches. The order is computed as Quantus computes it, bit for bit, so that ties (the zeros of a
    rectified map) fall the same way: the attribution in float32, normalised by its largest absolute value,
    broadcast over the channels, padded with zeros to whole patches, summed per patch in (channel, row, column)
    order, and sorted by `np.argsort` of the negated sums."""
    channels, height, width = image.shape
    patch = int(parameters["patch_size"])
    heat = _prepared_heat(raw_map, image, parameters)
    pad_h, pad_w = _padding(height, patch), _padding(width, patch)
    padded = np.pad(np.broadcast_to(heat, (channels, height, width)), ((0, 0), pad_h, pad_w))
    rows, columns = padded.shape[1] // patch, padded.shape[2] // patch
    blocks = padded.reshape(channels, rows, patch, columns, patch).transpose(1, 3, 0, 2, 4).reshape(rows * columns, -1)
    order = np.argsort(-blocks.sum(axis=-1))
    place = np.empty_like(order)
    place[order] = np.arange(order.size)
    ranks = torch.from_numpy(place.reshape(rows, columns)).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    ranks = ranks[pad_h[0] : pad_h[0] + height, pad_w[0] : pad_w[0] + width]
    return ranks.to(image.device), order.size


def _patches_removed(runner: PassRunner, image: torch.Tensor, ranks: torch.Tensor, count: int) -> Steps[torch.Tensor]:
    """Logits (count, K) of the image with its first 1, 2, ..., `count` patches (by `ranks`) set to its smallest
    value (Quantus's "black")."""
    return (yield from _perturbed(runner, image, count, lambda steps: ranks[None, None] < _column(steps + 1)))


def _perturbed(
    runner: PassRunner,
    image: torch.Tensor,
    count: int,
    removed: Callable[[torch.Tensor], torch.Tensor],
    fills: torch.Tensor | None = None,
) -> Steps[torch.Tensor]:
    """Logits (count, K) of `count` copies of the image, copy i with the values where `removed(i)` is true set to
    `fills[i]` (default: the image's smallest value, Quantus's "black"); the copies are made a chunk at a time."""
    black = image.min()

    def make_inputs(indices: torch.Tensor) -> torch.Tensor:
        indices = indices.to(image.device)
        fill = black if fills is None else _column(fills.to(image.device)[indices])
        return torch.where(removed(indices), fill, image[None])

    return (yield from runner.logits_of(count, make_inputs))


def _column(values: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1), to compare or fill against (N, C, H, W) copies."""
    return values[:, None, None, None]


def _padding(size: int, patch: int) -> tuple[int, int]:
    """Quantus's `get_padding_size`: what makes `size` a multiple of `patch`, split with the odd pixel after."""
    total = -size % patch
    return total // 2, total - total // 2


MODEL_METRICS: dict[str, Callable[..., Steps[float]]] = {
    "faithfulness_correlation": faithfulness_correlation,
    "region_perturbation": region_perturbation,
    "selectivity": selectivity,
    "pixel_flipping": pixel_flipping,
    "faithfulness_estimate": faithfulness_estimate,
    "monotonicity_correlation": monotonicity_correlation,
}
"""The metrics that run through the model, by name, each with the `Metric` entry that describes it
(`service.metrics.model_metrics`)."""
