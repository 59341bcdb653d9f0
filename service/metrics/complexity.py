"""Quantus's complexity metrics, from the attribution alone (see `service.metrics.attribution`):

- sparseness (Chalasani et al. 2020): the Gini index of the flattened attribution, each value + 1e-7; higher
  is sparser (better).
- complexity (Bhatt et al. 2020): the entropy of the attribution's share of its total, -sum p log(p + 1e-12);
  lower is simpler (better).
- effective_complexity (Nguyen & Martinez 2020): how many values exceed `eps` (1e-5); lower is better.
"""

import numpy as np

from service.metrics.attribution import Metric, Parameters, prepared


def sparseness(a: np.ndarray, _region: np.ndarray | None, parameters: Parameters) -> float:
    values = np.sort(prepared(a, parameters) + 1e-7)
    n = values.size
    return float(((2 * np.arange(1, n + 1) - n - 1) * values).sum() / (n * values.sum()))


def complexity(a: np.ndarray, _region: np.ndarray | None, parameters: Parameters) -> float:
    values = prepared(a, parameters)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero map: undefined (nan), as in Quantus
        shares = values / np.abs(values).sum()
    return float(-(shares * np.log(shares + 1e-12)).sum())


def effective_complexity(a: np.ndarray, _region: np.ndarray | None, parameters: Parameters) -> float:
    return float(np.sum(prepared(a, parameters) > parameters["eps"]))


DEFAULTS: Parameters = {"abs": True, "normalise": True}
COMPLEXITY_METRICS = (
    Metric(
        name="sparseness",
        title="Sparseness",
        group="complexity",
        paper="Chalasani et al. 2020, Concise Explanations of Neural Networks using Adversarial Training",
        definition="The Gini index of the attribution's values (each + 1e-7), sorted ascending: "
        "sum_i (2i - n - 1) a_i / (n sum_i a_i).",
        better="higher",
        score=sparseness,
        parameters=dict(DEFAULTS),
    ),
    Metric(
        name="complexity",
        title="Complexity",
        group="complexity",
        paper="Bhatt et al. 2020, Evaluating and Aggregating Feature-based Model Explanations",
        definition="The entropy of each value's share of the total: -sum_i p_i log(p_i + 1e-12), "
        "p_i = |a_i| / sum_j |a_j|.",
        better="lower",
        score=complexity,
        parameters=dict(DEFAULTS),
    ),
    Metric(
        name="effective_complexity",
        title="Effective complexity",
        group="complexity",
        paper="Nguyen & Martinez 2020, On Quantitative Aspects of Model Interpretability",
        definition="How many values of the attribution exceed eps.",
        better="lower",
        score=effective_complexity,
        parameters={**DEFAULTS, "eps": 1e-5},
    ),
)
