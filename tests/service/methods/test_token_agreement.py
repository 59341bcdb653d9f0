"""Layer methods on token models agree with pytorch-grad-cam given its `reshape_transform` for them.

The same seeded ViT-Tiny and Swin-Tiny and the same input tensor through the service and through
pytorch-grad-cam 1.5.7 with the reshape its documentation gives for each family: ViT tokens -> grid with the
class token dropped, Swin's channels-last maps -> channels-first. Pearson correlation on the displayed map,
as in test_reference_agreement.py.
"""

import pytest
import torch
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_store import LoadedModel
from tests.service.methods.test_reference_agreement import (
    CAM_REFERENCES,
    THRESHOLD,
    as_displayed,
    our_raw_maps,
    pearson,
    trainable_copy,
)
from tests.token_models import seeded_swin, seeded_vit  # noqa: F401  (fixtures)

SINGLE_PASS = ["grad_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "hires_cam", "eigen_cam"]
REFERENCES = CAM_REFERENCES


def vit_reshape(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ViT example: (B, 1 + 14*14, C) -> (B, C, 14, 14), class token dropped."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 14, 14, tensor.size(2)).permute(0, 3, 1, 2)


def swin_reshape(tensor: torch.Tensor) -> torch.Tensor:
    """timm's Swin gives (B, h, w, C) maps: channels-first for the library."""
    return tensor.permute(0, 3, 1, 2)


RESHAPES = {"seeded_vit": vit_reshape, "seeded_swin": swin_reshape}


def reference_maps(method: str, model: LoadedModel, x: torch.Tensor, classes: list[int], model_fixture: str):
    module = trainable_copy(model)
    layer = module.get_submodule(model.default_layer)
    extra = {"ablation_layer": AblationLayerVit()} if method == "ablation_cam" and model_fixture == "seeded_vit" else {}
    with REFERENCES[method](
        model=module, target_layers=[layer], reshape_transform=RESHAPES[model_fixture], **extra
    ) as cam:
        if method == "ablation_cam":
            cam.batch_size = 64
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def agree(model_fixture: str, method: str, request, cat_photo, count: int = 2) -> None:
    model: LoadedModel = request.getfixturevalue(model_fixture)
    images = [cat_photo, cat_photo.rotate(90)][:count]
    x = torch.stack([model.preprocessing.to_tensor(image) for image in images])
    classes = [3, 7][:count]
    ours = our_raw_maps(model, method, x, classes)
    theirs = reference_maps(method, model, x, classes, model_fixture)
    for i in range(count):
        assert theirs[i].std() > 0, "reference map is constant; the comparison would mean nothing"
        agreement = pearson(as_displayed(ours[i], x.shape[-2:]), theirs[i])
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


@pytest.mark.parametrize("method", SINGLE_PASS)
@pytest.mark.parametrize("model_fixture", ["seeded_vit", "seeded_swin"])
def test_layer_methods_on_token_models_agree_with_pytorch_grad_cam(method, model_fixture, request, cat_photo):
    agree(model_fixture, method, request, cat_photo)


def test_shapley_cam_on_a_vit_adds_its_hessian_term(seeded_vit, cat_photo):
    """pytorch-grad-cam 1.5.7's ShapleyCAM fails on a ViT with a reshape_transform ("Invalid activation shape"):
    it passes the untransformed tokens on. So this tests the defining property instead: after GELU, softmax
    attention and LayerNorm the logit is not linear in the layer, the Hessian term is not zero, and the map
    differs from Grad-CAM's (it equals Grad-CAM's behind a linear head: test_cam_agreement.py)."""
    x = seeded_vit.preprocessing.to_tensor(cat_photo)[None]
    shapley = our_raw_maps(seeded_vit, "shapley_cam", x, [3])[0]
    grad_cam = our_raw_maps(seeded_vit, "grad_cam", x, [3])[0]
    assert shapley.std() > 0
    assert (shapley - grad_cam).abs().max() > 0.01 * grad_cam.abs().max()


def test_cam_on_swin_agrees_where_an_average_pool_feeds_the_head(request, cat_photo):
    agree("seeded_swin", "cam", request, cat_photo)


def test_ablation_replaces_a_token_layer_as_its_grid(seeded_vit, cat_photo):
    """Ablation-CAM writes ablated grids back into the ViT's tokens, class token kept: the same as zeroing channel
    k of the patch tokens with a plain hook. (pytorch-grad-cam's AblationLayerVit deviates from the paper on
    LayerNorm outputs: it sets the channel to min - 1e7 instead of 0, in the class token too; we follow the paper,
    so that library is no reference here.)"""
    x = seeded_vit.preprocessing.to_tensor(cat_photo)[None]
    ours = our_raw_maps(seeded_vit, "ablation_cam", x, [3])[0]
    module = trainable_copy(seeded_vit)
    channels = seeded_vit.layer_shapes[seeded_vit.default_layer][0]
    captured = {}

    def ablate(_module, _inputs, output):
        if "tokens" not in captured:
            captured["tokens"] = output.detach().clone()
            return None
        output = output.clone()
        output[torch.arange(len(output)), 1:, torch.arange(len(output))] = 0
        return output

    handle = module.get_submodule(seeded_vit.default_layer).register_forward_hook(ablate)
    try:
        with torch.no_grad():
            score = module(x)[0, 3]
            scores = module(x.expand(channels, -1, -1, -1))[:, 3]
    finally:
        handle.remove()
    weights = (score - scores) / score
    grid = captured["tokens"][0, 1:].T.reshape(channels, 14, 14)
    expected = torch.relu(torch.einsum("c,chw->hw", weights, grid))
    assert expected.std() > 0
    agreement = pearson(ours.numpy(), expected.numpy())
    print(f"seeded_vit ablation_cam vs a plain hook: pearson {agreement:.5f}")
    assert agreement >= THRESHOLD
