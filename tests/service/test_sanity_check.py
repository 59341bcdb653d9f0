"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The classifier layer of the built-in model is re-initialised (a copy: the warm model is untouched) and each
method's map of the cat photo is compared with the original by Spearman rank correlation. A method that
explains the model should change: rank correlation distinctly below 1, here below 0.9 (the measured values
fall in two groups: at most 0.87, or at least 0.98). Each method's `sanity_check` attribute
(published in GET /v1/methods and the README) must match what this test measures.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from model_store import LoadedModel
from service.explainer import run_batch
from service.jobs import ExplainJob
from service.methods import METHODS
from service.methods.deeplift_shap import DeepLiftShapOptions
from service.methods.gradient_shap import GradientShapOptions
from service.methods.integrated_gradients import IntegratedGradientsOptions
from service.methods.smoothgrad import SmoothGradOptions

PASS_BELOW = 0.9


@pytest.fixture(scope="module")
def randomized(builtin_model: LoadedModel) -> LoadedModel:
    module = copy.deepcopy(builtin_model.module)
    torch.manual_seed(0)
    module.get_submodule(builtin_model.classifier_layer).reset_parameters()
    return dataclasses.replace(builtin_model, module=module)


def explain(model: LoadedModel, image: torch.Tensor, method: str, class_index: int) -> torch.Tensor:
    options = (
        SmoothGradOptions(samples=8),
        IntegratedGradientsOptions(steps=16),
        DeepLiftShapOptions(samples=4),
        GradientShapOptions(samples=8),
    )
    job = ExplainJob(
        image, (METHODS[method],), (class_index,), 1, model.default_layer, float("inf"), "sanity", options=options
    )
    return run_batch(model, [job], chunk_size=64)[0].maps[0].map


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_maps_change_when_the_classifier_is_randomised_as_recorded(method, builtin_model, randomized, cat_photo):
    image = builtin_model.preprocessing.to_tensor(cat_photo)
    image = F.interpolate(image[None], size=(112, 112), mode="bilinear", antialias=True)[
        0
    ]  # quicker; fully convolutional
    with torch.no_grad():
        class_index = int(builtin_model.module(image[None]).argmax())
    original = explain(builtin_model, image, method, class_index).flatten().numpy()
    after = explain(randomized, image, method, class_index).flatten().numpy()
    rho = spearmanr(original, after).statistic
    print(f"{method}: spearman {rho:.3f}")
    assert (rho < PASS_BELOW) == METHODS[method].sanity_check, (method, rho)
