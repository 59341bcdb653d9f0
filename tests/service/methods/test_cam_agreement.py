"""pytorch-grad-cam's further methods agree with it: same model, same input tensor, Pearson on the displayed map
(the conventions of test_reference_agreement.py, whose helpers this uses), on the built-in model and a seeded
ResNet-18.

- Eigen-Grad-CAM against the reference with the library's own sign correction (as Eigen-CAM): an SVD leaves the
  sign of a principal component open.
- KPCA-CAM against the reference as it is: scikit-learn's KernelPCA fixes the sign of its eigenvector (largest
  magnitude positive), and so do we.
- `aug_smooth` against the reference's (ttach's flip x multiply, each map scaled, then averaged).
- `eigen_smooth` against the reference's, its projection sign-corrected as ours (the library's own correction,
  patched in where it projects).
- Shapley-CAM: at these layers the head after the layer is linear, so its Hessian term is zero and it equals
  Grad-CAM; test_token_agreement.py compares it where the term is not zero (a ViT).
- FullGrad at the input resolution; the library ignores the target layer and takes every Conv2d and BatchNorm2d
  with a bias, as we do.
- Finer-CAM on Grad-CAM (the library's default), with the library's own choice of comparison classes.
- Random-CAM with the same seed: the reference draws `np.random.uniform(-1, 1, (N, C))` from numpy's global
  state, seeded here before each one-image call; ours draws `RandomState(seed).uniform(-1, 1, C)`.
"""

import numpy as np
import pytest
import pytorch_grad_cam.base_cam
import pytorch_grad_cam.grad_cam_elementwise
import pytorch_grad_cam.hirescam
import pytorch_grad_cam.layer_cam
from pytorch_grad_cam import KPCA_CAM, EigenGradCAM, FinerCAM, FullGrad, GradCAMElementWise, RandomCAM, ShapleyCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

from model_store import LoadedModel
from service.methods.channel_maps import ChannelMapOptions
from service.methods.random_cam import RandomCAMOptions
from tests.service.methods.test_reference_agreement import (
    CAM_REFERENCES,
    MODELS,
    THRESHOLD,
    as_displayed,
    inputs_and_classes,
    our_raw_maps,
    pearson,
    seeded_resnet18,  # noqa: F401  (fixture)
    trainable_copy,
)


class SignCorrectedEigenGradCAM(EigenGradCAM):
    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(grads * activations)


REFERENCES = CAM_REFERENCES | {
    "grad_cam_elementwise": GradCAMElementWise,
    "eigen_grad_cam": SignCorrectedEigenGradCAM,
    "kpca_cam": KPCA_CAM,
    "random_cam": RandomCAM,
    "shapley_cam": ShapleyCAM,
    "fullgrad": FullGrad,
}


def reference_maps(method: str, model: LoadedModel, x, classes: list[int], **call) -> np.ndarray:
    module = trainable_copy(model)
    with REFERENCES[method](model=module, target_layers=[module.get_submodule(model.default_layer)]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes], **call)


def assert_agree(model_fixture: str, method: str, ours, theirs, size) -> None:
    for i, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert reference.std() > 0, "reference map is constant; the comparison would mean nothing"
        agreement = pearson(as_displayed(mine, size), reference)
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


@pytest.mark.parametrize("method", ["grad_cam_elementwise", "eigen_grad_cam", "kpca_cam", "shapley_cam", "fullgrad"])
@pytest.mark.parametrize("model_fixture", MODELS)
def test_single_pass_methods_agree_with_pytorch_grad_cam(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, method, x, classes)
    assert_agree(model_fixture, method, ours, reference_maps(method, model, x, classes), x.shape[-2:])


@pytest.mark.parametrize("model_fixture", MODELS)
def test_random_cam_agrees_with_the_same_seed_and_a_seed_matters(model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    theirs = []
    for i in range(len(classes)):
        np.random.seed(7)
        theirs.append(reference_maps("random_cam", model, x[i : i + 1], classes[i : i + 1])[0])
    ours = our_raw_maps(model, "random_cam", x, classes, (RandomCAMOptions(seed=7),))
    assert_agree(model_fixture, "random_cam", ours, theirs, x.shape[-2:])
    other = our_raw_maps(model, "random_cam", x, classes, (RandomCAMOptions(seed=8),))
    assert pearson(as_displayed(other[0], x.shape[-2:]), theirs[0]) < THRESHOLD


EIGEN_SMOOTH = ["grad_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "hires_cam", "grad_cam_elementwise"]


@pytest.mark.parametrize("method", EIGEN_SMOOTH)
@pytest.mark.parametrize("model_fixture", MODELS)
def test_eigen_smooth_agrees_with_pytorch_grad_cam(method, model_fixture, request, cat_photo, monkeypatch):
    for module in (
        pytorch_grad_cam.base_cam,
        pytorch_grad_cam.hirescam,
        pytorch_grad_cam.layer_cam,
        pytorch_grad_cam.grad_cam_elementwise,
    ):
        monkeypatch.setattr(module, "get_2d_projection", get_2d_projection_with_sign_correction)
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, method, x, classes, (ChannelMapOptions(eigen_smooth=True),))
    plain = our_raw_maps(model, method, x, classes)
    theirs = reference_maps(method, model, x, classes, eigen_smooth=True)
    assert_agree(model_fixture, f"{method} eigen_smooth", ours, theirs, x.shape[-2:])
    assert not np.allclose(as_displayed(plain[0], x.shape[-2:]), as_displayed(ours[0], x.shape[-2:]), atol=1e-3)


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp", "layer_cam"])
@pytest.mark.parametrize("model_fixture", MODELS)
def test_aug_smooth_agrees_with_pytorch_grad_cam(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, method, x, classes, (ChannelMapOptions(aug_smooth=True),))
    plain = our_raw_maps(model, method, x, classes)
    theirs = reference_maps(method, model, x, classes, aug_smooth=True)
    assert_agree(model_fixture, f"{method} aug_smooth", ours, theirs, x.shape[-2:])
    assert not np.allclose(as_displayed(plain[0], x.shape[-2:]), as_displayed(ours[0], x.shape[-2:]), atol=1e-3)


@pytest.mark.parametrize("model_fixture", MODELS)
def test_finer_cam_agrees_with_pytorch_grad_cam(model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, "finer_cam", x, classes)
    theirs = []
    for i, class_index in enumerate(classes):
        module = trainable_copy(model)
        with FinerCAM(model=module, target_layers=[module.get_submodule(model.default_layer)]) as cam:
            theirs.append(cam(input_tensor=x[i : i + 1], target_idx=class_index)[0])
    assert_agree(model_fixture, "finer_cam", ours, theirs, x.shape[-2:])
    plain = our_raw_maps(model, "grad_cam", x, classes)
    assert pearson(as_displayed(plain[0], x.shape[-2:]), theirs[0]) < 0.999  # the comparison classes matter
