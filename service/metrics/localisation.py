"""Quantus's localisation metrics: the attribution (see `service.metrics.attribution`) against the region where
the object is, the request's `target_box` as a mask at the attribution's resolution. Each is undefined (nan) for
an empty region, as in Quantus.

- pointing_game (Zhang et al. 2018): 1 when a pixel of the attribution's maximum lies in the region, else 0.
- attribution_localisation (Kohlbrenner et al. 2020): the attribution's share inside the region,
  sum_s a / (sum a + 1e-9).
- top_k_intersection (Theiner et al. 2021): the share of the k (1000) largest values that lie in the region.
- relevance_rank_accuracy (Arras et al. 2021): the share of the |region| largest values that lie in it.
- relevance_mass_accuracy (Arras et al. 2021): the attribution's sum inside the region over its total.
- auc (Fawcett 2006): the area under the ROC curve of the attribution as a score of being in the region (ties
  count a half, as the trapezoids of scikit-learn's `roc_curve` and `auc`).
"""

import numpy as np
from scipy.stats import rankdata

from service.metrics.attribution import Metric, Parameters, prepared


def _flat(region: np.ndarray | None) -> np.ndarray:
    assert region is not None, "a localisation metric needs a region"
    return np.asarray(region, dtype=bool).ravel()


def _ranked(a: np.ndarray) -> np.ndarray:
    """Indices of the values, largest first, in the order Quantus takes them (`np.argsort(-a)`)."""
    return np.argsort(-a[None], axis=-1)[0]


def pointing_game(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    if not inside.any():
        return float("nan")
    return float(np.any(inside & (values == values.max())))


def attribution_localisation(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    ratio = (values * inside).sum() / (values.sum() + 1e-9)
    return float(ratio) if inside.any() and ratio <= 1 else float("nan")


def top_k_intersection(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    if not inside.any():
        return float("nan")
    return float(inside[_ranked(values)[: int(parameters["k"])]].mean())


def relevance_rank_accuracy(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    size = int(inside.sum())
    return float(inside[_ranked(values)[:size]].sum() / size) if size else float("nan")


def relevance_mass_accuracy(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    return float((values * inside).sum() / values.sum()) if inside.any() else float("nan")


def auc(a: np.ndarray, region: np.ndarray | None, parameters: Parameters) -> float:
    values, inside = prepared(a, parameters), _flat(region)
    positives, negatives = int(inside.sum()), int((~inside).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(values)  # average ranks: a tie counts a half (Mann-Whitney U = the ROC curve's area)
    return float((ranks[inside].sum() - positives * (positives + 1) / 2) / (positives * negatives))


SIGNED: Parameters = {"abs": False, "normalise": True}
LOCALISATION_METRICS = (
    Metric(
        name="pointing_game",
        title="Pointing game",
        group="localisation",
        paper="Zhang et al. 2018, Top-Down Neural Attention by Excitation Backprop",
        definition="1 when a pixel of the attribution's maximum lies in the target region, else 0.",
        better="higher",
        score=pointing_game,
        parameters={"weighted": False, **SIGNED},
        needs_region=True,
    ),
    Metric(
        name="attribution_localisation",
        title="Attribution localisation",
        group="localisation",
        paper="Kohlbrenner et al. 2020, Towards Best Practice in Explaining Neural Network Decisions with LRP",
        definition="The attribution's sum inside the target region over its total (+ 1e-9).",
        better="higher",
        score=attribution_localisation,
        parameters={"weighted": False, "max_size": 1.0, "positive_attributions": False, "abs": True, "normalise": True},
        needs_region=True,
    ),
    Metric(
        name="top_k_intersection",
        title="Top-k intersection",
        group="localisation",
        paper="Theiner et al. 2021, Interpretable Semantic Photo Geolocation",
        definition="The share of the k largest values of the attribution that lie in the target region.",
        better="higher",
        score=top_k_intersection,
        parameters={"k": 1000, "concept_influence": False, **SIGNED},
        needs_region=True,
    ),
    Metric(
        name="relevance_rank_accuracy",
        title="Relevance rank accuracy",
        group="localisation",
        paper="Arras et al. 2021, CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural "
        "network explanations",
        definition="The share of the |region| largest values of the attribution that lie in the target region.",
        better="higher",
        score=relevance_rank_accuracy,
        parameters=dict(SIGNED),
        needs_region=True,
    ),
    Metric(
        name="relevance_mass_accuracy",
        title="Relevance mass accuracy",
        group="localisation",
        paper="Arras et al. 2021, CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural "
        "network explanations",
        definition="The attribution's sum inside the target region over its total.",
        better="higher",
        score=relevance_mass_accuracy,
        parameters=dict(SIGNED),
        needs_region=True,
    ),
    Metric(
        name="auc",
        title="AUC",
        group="localisation",
        paper="Fawcett 2006, An introduction to ROC analysis",
        definition="The area under the ROC curve of the attribution as a score of each pixel being in the target "
        "region.",
        better="higher",
        score=auc,
        parameters=dict(SIGNED),
        needs_region=True,
    ),
)
