"""Scores of an explanation: faithfulness from batched passes through the pass runner (`evaluate`), and
Quantus's metrics by name (`metrics`; the complexity group today, from the map alone)."""

from service.metrics.complexity import COMPLEXITY_METRICS, ComplexityMetric

METRICS: dict[str, ComplexityMetric] = dict(COMPLEXITY_METRICS)
"""Every metric a request may name, by Quantus's snake_case name."""

__all__ = ["METRICS", "ComplexityMetric"]
