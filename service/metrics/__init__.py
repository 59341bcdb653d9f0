"""Scores of an explanation: faithfulness from batched passes through the pass runner (`evaluate`), and
Quantus's metrics by name (`metrics`: the complexity and localisation groups from the map alone, faithfulness
correlation through the model)."""

from service.metrics.attribution import Metric
from service.metrics.complexity import COMPLEXITY_METRICS
from service.metrics.localisation import LOCALISATION_METRICS
from service.metrics.model_metrics import MODEL_METRICS

METRICS: dict[str, Metric] = {
    metric.name: metric for metric in COMPLEXITY_METRICS + LOCALISATION_METRICS + MODEL_METRICS
}
"""Every metric a request may name, by Quantus's snake_case name."""

__all__ = ["METRICS", "Metric"]
