"""Quantus's metrics that run through the model (faithfulness correlation and estimate, pixel flipping, region
perturbation, selectivity): their descriptions (the computations, in torch, are in `service.metrics.faithfulness`
and run in the worker, their passes batched by the pass runner and counted by the cost bound). Classification
models only, like `evaluate`."""

import math

from service.metrics.attribution import Metric, Parameters


def patches(size: tuple[int, int], parameters: Parameters) -> int:
    """The input's patches of `patch_size` (the last row and column padded to whole patches, as Quantus does)."""
    patch = int(parameters["patch_size"])
    return math.ceil(size[0] / patch) * math.ceil(size[1] / patch)


def feature_steps(size: tuple[int, int], parameters: Parameters) -> int:
    """Steps of `features_in_step` input values (channel, row, column) over the whole input."""
    return math.ceil(3 * size[0] * size[1] / int(parameters["features_in_step"]))


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
        passes=lambda _size, parameters: int(parameters["nr_runs"]),
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
        passes=lambda size, parameters: min(int(parameters["regions_evaluation"]), patches(size, parameters)),
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
        passes=patches,
        cost="one forward pass per patch per explanation (784 on a 224 px input)",
    ),
    Metric(
        name="pixel_flipping",
        title="Pixel flipping",
        group="faithfulness",
        paper="Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise "
        "Relevance Propagation",
        definition="The input's values (channel, row, column), most relevant first, set to the input's smallest "
        "value features_in_step more at a time until none is left; the area (trapezoids of width 1) under the "
        "curve of the class probability (softmax) after each step (Quantus's return_auc_per_sample).",
        better="lower",
        score=None,
        parameters={
            "features_in_step": 1,
            "perturb_baseline": "black",
            "softmax": True,
            "return_auc_per_sample": True,
            "abs": False,
            "normalise": True,
        },
        passes=feature_steps,
        cost="one forward pass per step: 3 x height x width / features_in_step (at Quantus's default 1, 150,528 "
        "at 224 px: above the cost bound; features_in_step=1568 makes 96)",
    ),
    Metric(
        name="faithfulness_estimate",
        title="Faithfulness estimate",
        group="faithfulness",
        paper="Alvarez-Melis & Jaakkola 2018, Towards Robust Interpretability with Self-Explaining Neural Networks",
        definition="Pearson correlation, over the input's values taken features_in_step at a time, most relevant "
        "first, between the attribution's sum over each step's values and the class logit's drop when only "
        "those values are set to the input's smallest value.",
        better="higher",
        score=None,
        parameters={
            "features_in_step": 1,
            "perturb_baseline": "black",
            "softmax": False,
            "abs": False,
            "normalise": True,
        },
        passes=feature_steps,
        cost="one forward pass per step: 3 x height x width / features_in_step (as pixel_flipping)",
    ),
    Metric(
        name="monotonicity_correlation",
        title="Monotonicity correlation",
        group="faithfulness",
        paper="Nguyen & Martinez 2020, On Quantitative Aspects of Model Interpretability",
        definition="Spearman correlation, over the input's values taken features_in_step at a time, least relevant "
        "first, between the attribution's sum over each step's values and the mean squared change of the class "
        "probability (softmax) when only those values are set to a uniform draw, nr_samples times, over the "
        "probability squared.",
        better="higher",
        score=None,
        parameters={
            "features_in_step": 1,
            "nr_samples": 100,
            "eps": 1e-5,
            "perturb_baseline": "uniform",
            "similarity_func": "correlation_spearman",
            "softmax": True,
            "abs": True,
            "normalise": True,
            "seed": 0,
        },
        passes=lambda size, parameters: feature_steps(size, parameters) * int(parameters["nr_samples"]),
        cost="nr_samples forward passes per step: 3 x height x width / features_in_step x nr_samples (at "
        "Quantus's defaults 15 million at 224 px; features_in_step=12544 and nr_samples=10 make 120)",
    ),
)
