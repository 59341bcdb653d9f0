"""Quantus's metrics that run through the model (faithfulness correlation, region perturbation, selectivity): their
descriptions (the computations, in torch, are in
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
    Metric(
        name="region_perturbation",
        title="Region perturbation",
        group="faithfulness",
        paper="Samek et al. 2015, Evaluating the Visualization of What a Deep Neural Network Has Learned",
        definition="The input's patches of patch_size, most relevant first, set to the input's smallest value one "
        "more at a time for regions_evaluation steps; the area (trapezoids of width 1) under the curve of the "
        "class probability's drop (softmax) after each step (Quantus's get_auc_score).",
        better="higher",
        score=None,
        parameters={
            "patch_size": 8,
            "regions_evaluation": 100,
            "order": "morf",
            "perturb_baseline": "black",
            "softmax": True,
            "abs": False,
            "normalise": True,
        },
        passes=100,
        cost="regions_evaluation forward passes per explanation (100; at most one per patch)",
    ),
    Metric(
        name="selectivity",
        title="Selectivity",
        group="faithfulness",
        paper="Montavon et al. 2018, Methods for Interpreting and Understanding Deep Neural Networks",
        definition="Every patch of patch_size of the input, most relevant first, set to the input's smallest value "
        "one more at a time; the area (trapezoids of width 1) under the curve of the class probability (softmax) "
        "after each step (Quantus's get_auc_score).",
        better="lower",
        score=None,
        parameters={"patch_size": 8, "perturb_baseline": "black", "softmax": True, "abs": False, "normalise": True},
        passes=None,
        cost="one forward pass per patch per explanation (784 on a 224 px input)",
    ),
)
