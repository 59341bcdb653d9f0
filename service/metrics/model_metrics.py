"""Quantus's metrics that run through the model: their descriptions (the computations, in torch, are in
`service.metrics.faithfulness` and run in the worker, their passes batched by the pass runner and counted by the
cost bound). Classification models only, like `evaluate`."""

from service.metrics.attribution import Metric

MODEL_METRICS = (
    Metric(
        name="faithfulness_correlation",
        title="Faithfulness correlation",
        group="faithfulness",
        paper="Bhatt et al. 2020, Evaluating and Aggregating Feature-based Model Explanations",
        definition="Pearson correlation, over nr_runs random subsets of subset_size input values set to the "
        "input's smallest value, between the attribution's sum over the subset and the class logit's drop.",
        better="higher",
        score=None,
        parameters={
            "nr_runs": 100,
            "subset_size": 224,
            "perturb_baseline": "black",
            "abs": False,
            "normalise": True,
            "seed": 0,
        },
        passes=100,
        cost="nr_runs forward passes per explanation (100)",
    ),
)
