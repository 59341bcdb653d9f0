"""The defining properties of the attribution methods, beside their agreement with captum.

- DeepLIFT's summation-to-delta (Shrikumar et al. eq. 1): the map sums to S_c(x) - S_c(x') on a model whose
  nonlinearities are modules (the built-in EfficientNet-Lite0: ReLU6, BatchNorm, depthwise convolutions, no max
  pooling); DeepLIFT SHAP to S_c(x) minus the mean over its baselines.
- KernelSHAP's efficiency: the Shapley values of the patches sum to the drop from the image to the fill.
- GradientSHAP's completeness holds in expectation only: with many samples the map's sum approaches
  S_c(x) - E_b S_c(b) (noise 0); its seed makes the estimate reproducible and a new seed changes it.
"""

import time

import pytest
import torch
import torch.nn.functional as F

from model_store import LoadedModel
from service.engine.explainer import run_batch
from service.engine.work import ExplainJob
from service.methods import METHODS
from service.methods.deeplift import DeepLiftOptions
from service.methods.deeplift_shap import DeepLiftShapOptions, baseline_distribution
from service.methods.gradient_shap import GradientShapOptions, sample_paths
from service.methods.kernel_shap import KernelShapOptions
from tests.tiny_models import tiny_loaded


def explain(model: LoadedModel, image: torch.Tensor, method: str, class_index: int, options: object) -> torch.Tensor:
    deadline = time.monotonic() + 600
    job = ExplainJob(image, (METHODS[method],), (class_index,), 1, None, deadline, "t", options=(options,))
    return run_batch(model, [job], chunk_size=16)[0].maps[0].map


def logit(model: LoadedModel, images: torch.Tensor, class_index: int) -> torch.Tensor:
    with torch.no_grad():
        return model.module(images)[:, class_index]


@pytest.fixture(scope="module")
def small_cat(builtin_model, cat_photo) -> torch.Tensor:
    image = builtin_model.preprocessing.to_tensor(cat_photo)
    return F.interpolate(image[None], size=(112, 112), mode="bilinear", antialias=True)[0]


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_deeplift_sums_to_the_logit_difference(builtin_model, small_cat, baseline):
    black = -torch.tensor(builtin_model.preprocessing.mean) / torch.tensor(builtin_model.preprocessing.std)
    reference = (black if baseline == "black" else torch.zeros(3)).view(3, 1, 1).expand_as(small_cat)
    for class_index in (281, 3):
        attribution = explain(builtin_model, small_cat, "deeplift", class_index, DeepLiftOptions(baseline))
        delta = logit(builtin_model, torch.stack([small_cat, reference]), class_index)
        expected = float(delta[0] - delta[1])
        print(f"deeplift {baseline} class {class_index}: sum {float(attribution.sum()):.5f}, delta {expected:.5f}")
        assert abs(expected) > 0.1
        assert float(attribution.sum()) == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_deeplift_shap_sums_to_the_logit_minus_the_mean_over_its_baselines(builtin_model, small_cat):
    options = DeepLiftShapOptions(samples=4, seed=3)
    attribution = explain(builtin_model, small_cat, "deeplift_shap", 281, options)
    generator = torch.Generator().manual_seed(options.seed)
    baselines = baseline_distribution(options.samples, small_cat.shape, generator, small_cat.device)
    expected = float(logit(builtin_model, small_cat[None], 281)[0] - logit(builtin_model, baselines, 281).mean())
    assert float(attribution.sum()) == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_gradient_shap_is_complete_in_expectation_and_reproducible():
    """With noise 0 each sample is an unbiased one-point estimate of the Integrated Gradients from its baseline,
    so the map sums to S_c(x) minus the mean of S_c over the chosen baselines, up to the Monte Carlo error of the
    path points (under 1% here). The input is far from the baselines (6 x a standard normal image), so that
    the logit difference is many times the spread of the baselines' logits and the check means something."""
    model = tiny_loaded()
    image = 6 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5))
    options = GradientShapOptions(samples=2048, seed=1)
    attribution = explain(model, image, "gradient_shap", 3, options)
    _points, differences = sample_paths(image, options)
    chosen = image - differences
    expected = float(logit(model, image[None], 3)[0] - logit(model, chosen, 3).mean())
    spread = float(logit(model, chosen, 3).std())
    print(f"gradient_shap: sum {float(attribution.sum()):.5f}, expected {expected:.5f}, spread {spread:.5f}")
    assert abs(expected) > 10 * spread
    assert float(attribution.sum()) == pytest.approx(expected, rel=0.02)
    assert torch.equal(attribution, explain(model, image, "gradient_shap", 3, options))
    one, other = (GradientShapOptions(samples=8, seed=seed) for seed in (1, 2))
    different = explain(model, image, "gradient_shap", 3, other)
    assert not torch.equal(explain(model, image, "gradient_shap", 3, one), different)


def test_kernel_shap_values_add_up_to_the_drop_from_the_image_to_the_fill():
    """Efficiency (Lundberg & Lee eq. 8 with the all-kept and none-kept coalitions weighted 1e6, as captum): the
    Shapley values of the patches sum to S_c(x) - S_c(every patch filled). 16 patches of 8 x 8 pixels."""
    model = tiny_loaded()
    image = 6 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5))
    options = KernelShapOptions(samples=64, window=8, fill="black")
    attribution = explain(model, image, "kernel_shap", 3, options)
    black = (-torch.tensor(model.preprocessing.mean) / torch.tensor(model.preprocessing.std)).view(3, 1, 1)
    values = logit(model, torch.stack([image, black.expand_as(image)]), 3)
    per_patch = attribution[::8, ::8]
    assert torch.equal(attribution, per_patch.repeat_interleave(8, 0).repeat_interleave(8, 1))
    assert float(per_patch.sum()) == pytest.approx(float(values[0] - values[1]), rel=1e-4, abs=1e-5)
    assert abs(float(values[0] - values[1])) > 0.05
