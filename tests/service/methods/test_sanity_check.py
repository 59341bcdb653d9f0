"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The classifier layer of the built-in model is re-initialised (a copy: the warm model is untouched) and each
method's map of the cat photo is compared with the original by Spearman rank correlation. A method that
explains the model should change: rank correlation distinctly below 1, here below 0.9 (the measured values
fall in two groups: at most 0.88, or at least 0.95). Each method's `sanity_check` attribute
(published in GET /v1/methods and docs/methods.md) must match what this test measures.
"""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from model_store import LoadedModel
from service.engine.explainer import run_batch
from service.engine.work import ExplainJob
from service.methods import METHODS
from service.methods.deeplift_shap import DeepLiftShapOptions
from service.methods.gradient_shap import GradientShapOptions
from service.methods.integrated_gradients import IntegratedGradientsOptions
from service.methods.is_cam import ISCAMOptions
from service.methods.smoothgrad import SmoothGradOptions
from service.methods.ss_cam import SSCAMOptions
from tests.service.methods.test_reference_agreement import seeded_plain_cnn
from tests.token_models import seeded_vit  # noqa: F401  (fixture)

PASS_BELOW = 0.9


def randomized(model: LoadedModel) -> LoadedModel:
    module = copy.deepcopy(model.module)
    torch.manual_seed(0)
    module.get_submodule(model.classifier_layer).reset_parameters()
    return dataclasses.replace(model, module=module)


def explain(model: LoadedModel, image: torch.Tensor, method: str, class_index: int) -> torch.Tensor:
    options = (
        SmoothGradOptions(samples=8),
        IntegratedGradientsOptions(steps=16),
        DeepLiftShapOptions(samples=4),
        GradientShapOptions(samples=8),
        ISCAMOptions(samples=2),
        SSCAMOptions(samples=2),
    )
    job = ExplainJob(
        image, (METHODS[method],), (class_index,), 1, model.default_layer, float("inf"), "sanity", options=options
    )
    return run_batch(model, [job], chunk_size=64)[0].maps[0].map


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_maps_change_when_the_classifier_is_randomised_as_recorded(method, request, builtin_model, cat_photo):
    """On the built-in model; a method that does not apply to it on the seeded plain CNN of the agreement tests, a
    VGG-like chain (lrp), or on the seeded ViT-Tiny (the methods that read a transformer's attention)."""
    model = builtin_model
    if METHODS[method].not_applicable_to(model.module) is not None:
        model = seeded_plain_cnn()
        if METHODS[method].not_applicable_to(model.module) is not None:
            model = request.getfixturevalue("seeded_vit")
    image = model.preprocessing.to_tensor(cat_photo)
    if model.reshape == "none":  # quicker; fully convolutional (a ViT takes its own input size only)
        image = F.interpolate(image[None], size=(112, 112), mode="bilinear", antialias=True)[0]
    with torch.no_grad():
        class_index = int(model.module(image[None]).argmax())
    original = explain(model, image, method, class_index).flatten().numpy()
    after = explain(randomized(model), image, method, class_index).flatten().numpy()
    rho = spearmanr(original, after).statistic
    print(f"{method}: spearman {rho:.3f}")
    assert (rho < PASS_BELOW) == METHODS[method].sanity_check, (method, rho)
