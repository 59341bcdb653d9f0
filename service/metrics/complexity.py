"""Quantus's complexity metrics of an explanation, from its map alone (numpy; runs in the CPU pool).

Each takes the attribution `a` at the image's resolution in the model's input (the raw map upsampled as
`attribution`) and follows Quantus 0.6.0's `evaluate_batch` for a batch of one: `normalise` divides by the
largest absolute value (`normalise_by_max`; Quantus divides a batch by the batch's largest, so its values for a
batch of several explanations differ where a metric is not scale-invariant: `effective_complexity`), then `abs`
takes absolute values, then:

- sparseness (Chalasani et al. 2020): the Gini index of the flattened attribution, each value + 1e-7; higher
  is sparser (better).
- complexity (Bhatt et al. 2020): the entropy of the attribution's share of its total, -sum p log(p + 1e-12);
  lower is simpler (better).
- effective_complexity (Nguyen & Martinez 2020): how many values exceed `eps` (1e-5); lower is better.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ComplexityMetric:
    name: str
    title: str
    paper: str
    definition: str
    better: str  # "higher" or "lower"
    score: Callable[[np.ndarray, dict[str, float]], float]
    parameters: dict[str, float | bool] = field(default_factory=dict)
    """Its parameters under Quantus's names, at Quantus 0.6.0's defaults (`abs` and `normalise` for all)."""
    group: str = "complexity"
    cost: str = "none: the map alone"


def attribution(raw: np.ndarray, size: tuple[int, int], extent: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """(h, w) raw map -> the (height, width) attribution over an image of `size` (width, height) in the model's
    input, bilinear (half-pixel centres, as `F.interpolate(align_corners=False)`), no normalisation; the image
    covers the map's top-left `extent` (`service.imaging.encoding.upsample_map`)."""
    height, width = np.shape(raw)
    region = (0.0, 0.0, width * extent[1], height * extent[0])
    resized = Image.fromarray(np.asarray(raw, dtype=np.float32)).resize(size, Image.Resampling.BILINEAR, box=region)
    return np.asarray(resized, dtype=np.float64)


def prepared(a: np.ndarray, parameters: dict[str, float | bool]) -> np.ndarray:
    """Quantus's order: normalise by the largest absolute value (none for an all-zero map), then abs."""
    a = np.asarray(a, dtype=np.float64).ravel()
    if parameters["normalise"] and not np.all(a == 0.0):
        a = a / np.max(np.abs(a))
    return np.abs(a) if parameters["abs"] else a


def sparseness(a: np.ndarray, parameters: dict[str, float | bool]) -> float:
    values = np.sort(prepared(a, parameters) + 1e-7)
    n = values.size
    return float(((2 * np.arange(1, n + 1) - n - 1) * values).sum() / (n * values.sum()))


def complexity(a: np.ndarray, parameters: dict[str, float | bool]) -> float:
    values = prepared(a, parameters)
    shares = values / np.abs(values).sum()
    return float(-(shares * np.log(shares + 1e-12)).sum())


def effective_complexity(a: np.ndarray, parameters: dict[str, float | bool]) -> float:
    return float(np.sum(prepared(a, parameters) > parameters["eps"]))


DEFAULTS: dict[str, float | bool] = {"abs": True, "normalise": True}
COMPLEXITY_METRICS = {
    metric.name: metric
    for metric in (
        ComplexityMetric(
            name="sparseness",
            title="Sparseness",
            paper="Chalasani et al. 2020, Concise Explanations of Neural Networks using Adversarial Training",
            definition="The Gini index of the attribution's values (each + 1e-7), sorted ascending: "
            "sum_i (2i - n - 1) a_i / (n sum_i a_i).",
            better="higher",
            score=sparseness,
            parameters=dict(DEFAULTS),
        ),
        ComplexityMetric(
            name="complexity",
            title="Complexity",
            paper="Bhatt et al. 2020, Evaluating and Aggregating Feature-based Model Explanations",
            definition="The entropy of each value's share of the total: -sum_i p_i log(p_i + 1e-12), "
            "p_i = |a_i| / sum_j |a_j|.",
            better="lower",
            score=complexity,
            parameters=dict(DEFAULTS),
        ),
        ComplexityMetric(
            name="effective_complexity",
            title="Effective complexity",
            paper="Nguyen & Martinez 2020, On Quantitative Aspects of Model Interpretability",
            definition="How many values of the attribution exceed eps.",
            better="lower",
            score=effective_complexity,
            parameters={**DEFAULTS, "eps": 1e-5},
        ),
    )
}
