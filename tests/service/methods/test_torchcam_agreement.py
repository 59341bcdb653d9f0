"""torch-cam's Score-CAM variants agree with torch-cam 0.5.0 (the released version): same model, same input
tensor, Pearson on the raw maps (torch-cam's `normalized=False` maps are ours up to float error).

One forward pass per channel and sample: compared on one image at 112 px (both models are fully convolutional)
with two samples, to keep CI short. SS-CAM with the same seed: torch-cam draws its noise from the global
generator, seeded here with the request's seed, in the same shapes and order as ours.
"""

import pytest
import torch
import torch.nn.functional as F
from torchcam.methods import ISCAM, SSCAM, SmoothGradCAMpp

from model_store import LoadedModel
from service.methods.is_cam import ISCAMOptions
from service.methods.smooth_grad_cam_pp import SmoothGradCAMPlusPlusOptions
from service.methods.ss_cam import SSCAMOptions
from tests.service.methods.test_reference_agreement import (
    MODELS,
    THRESHOLD,
    inputs_and_classes,
    our_raw_maps,
    pearson,
    seeded_resnet18,  # noqa: F401  (fixture)
    trainable_copy,
)

SIZE = (112, 112)
SAMPLES = 2


def torchcam_map(method: str, model: LoadedModel, x: torch.Tensor, class_index: int, seed: int = 0) -> torch.Tensor:
    module = trainable_copy(model).eval()
    extractor_type, extra = (ISCAM, {}) if method == "is_cam" else (SSCAM, {"std": 2.0})
    with extractor_type(
        module, model.default_layer, batch_size=64, num_samples=SAMPLES, input_shape=(3, *SIZE), **extra
    ) as extractor:
        with torch.no_grad():
            scores = module(x)
        torch.manual_seed(seed)
        return extractor(class_idx=class_index, scores=scores, normalized=False)[0][0]


@pytest.mark.parametrize("method", ["is_cam", "ss_cam"])
@pytest.mark.parametrize("model_fixture", MODELS)
def test_score_cam_variants_agree_with_torchcam(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 1)
    x = F.interpolate(x, size=SIZE, mode="bilinear", antialias=True)
    options = ISCAMOptions(samples=SAMPLES) if method == "is_cam" else SSCAMOptions(samples=SAMPLES, seed=3)
    ours = our_raw_maps(model, method, x, classes, (options,))[0]
    theirs = torchcam_map(method, model, x, classes[0], seed=3)
    assert theirs.std() > 0, "reference map is constant; the comparison would mean nothing"
    agreement = pearson(ours.numpy(), theirs.numpy())
    print(f"{model_fixture} {method}: pearson {agreement:.5f}")
    assert agreement >= THRESHOLD, (method, model_fixture, agreement)


@pytest.mark.parametrize("model_fixture", MODELS)
def test_smooth_grad_cam_pp_agrees_with_torchcam_with_the_same_seed(model_fixture, request, cat_photo):
    """torch-cam draws the input noise from the global generator, seeded here as our request's seed: the same
    draws in the same order. A different seed gives a different map (the noise matters)."""
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, "smooth_grad_cam_pp", x, classes, (SmoothGradCAMPlusPlusOptions(seed=5),))
    other = our_raw_maps(model, "smooth_grad_cam_pp", x, classes, (SmoothGradCAMPlusPlusOptions(seed=6),))
    for i, class_index in enumerate(classes):
        module = trainable_copy(model).eval()
        with SmoothGradCAMpp(module, model.default_layer, num_samples=4, std=0.3, input_shape=x.shape[1:]) as cam:
            scores = module(x[i : i + 1])
            torch.manual_seed(5)
            theirs = cam(class_idx=class_index, scores=scores, normalized=False)[0][0]
        assert theirs.std() > 0, "reference map is constant; the comparison would mean nothing"
        agreement = pearson(ours[i].numpy(), theirs.detach().numpy())
        print(f"{model_fixture} smooth_grad_cam_pp target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (model_fixture, i, agreement)
        assert pearson(other[i].numpy(), theirs.detach().numpy()) < agreement
