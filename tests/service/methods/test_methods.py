"""Methods on tiny seeded models against hand computation."""

import pytest
import torch

from service.core.errors import UnknownMethod
from service.methods import METHODS, MethodInputs, NoOptions, resolve_method
from tests.tiny_models import TinyGapNet, seeded


def layer_inputs(activations, gradients=None, class_weights=None) -> MethodInputs:
    n = activations.shape[0]
    return MethodInputs(
        image_index=torch.arange(n),
        classes=torch.zeros(n, dtype=torch.long),
        images=torch.zeros(n, 3, 4, 4),
        logits=torch.zeros(n, 5),
        black=torch.zeros(3, 1, 1),
        options=NoOptions(),
        activations=activations,
        gradients=gradients,
        class_weights=class_weights,
    )


def hand_activations_and_gradient(model: TinyGapNet, x: torch.Tensor, class_index: int):
    """Features A (1, C, h, w) and dS_c/dA computed by hand through GAP + linear: w_c / (h*w) everywhere."""
    with torch.no_grad():
        features = model.features(model.stem(x))
    h, w = features.shape[-2:]
    gradient = (model.fc.weight[class_index] / (h * w)).view(1, -1, 1, 1).expand_as(features)
    return features, gradient


def test_cam_is_weight_rows_times_feature_maps():
    model = seeded(TinyGapNet)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    features, _ = hand_activations_and_gradient(model, x, 2)
    expected = sum(model.fc.weight[2, k] * features[0, k] for k in range(features.shape[1]))
    got = METHODS["cam"].compute(layer_inputs(features, class_weights=model.fc.weight[2:3]))
    torch.testing.assert_close(got[0], expected)


def test_grad_cam_equals_relu_cam_over_z_on_gap_linear_head():
    model = seeded(TinyGapNet)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    features, gradient = hand_activations_and_gradient(model, x, 1)
    cam = METHODS["cam"].compute(layer_inputs(features, class_weights=model.fc.weight[1:2]))
    grad_cam = METHODS["grad_cam"].compute(layer_inputs(features, gradient))
    z = features.shape[-1] * features.shape[-2]
    torch.testing.assert_close(grad_cam * z, torch.relu(cam))


def test_grad_cam_pp_follows_equation_19_element_by_element():
    g = torch.tensor([[[[0.5, -1.0], [0.0, 2.0]]]])  # (1, 1, 2, 2)
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    total = a.sum()
    alpha = [g_ij**2 / (2 * g_ij**2 + total * g_ij**3 + 1e-6) if g_ij != 0 else 0.0 for g_ij in g.flatten().tolist()]
    weight = sum(al * max(g_ij, 0.0) for al, g_ij in zip(alpha, g.flatten().tolist(), strict=True))
    expected = torch.relu(weight * a[0, 0])
    got = METHODS["grad_cam_pp"].compute(layer_inputs(a, g))
    torch.testing.assert_close(got[0], expected)


@pytest.mark.parametrize("name", ["cam", "grad_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "hires_cam", "eigen_cam"])
def test_degenerate_inputs_give_zeros_not_nan(name):
    zeros = torch.zeros(2, 4, 3, 3)
    inputs = layer_inputs(zeros, torch.zeros_like(zeros), torch.zeros(2, 4))
    got = METHODS[name].compute(inputs)
    assert got.shape == (2, 3, 3)
    assert torch.equal(got, torch.zeros_like(got))


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("grad_cam", "grad_cam"),
        ("GradCAM", "grad_cam"),
        ("gradcam", "grad_cam"),
        ("Grad-CAM", "grad_cam"),
        ("gradcam++", "grad_cam_pp"),
        ("GradCAMPlusPlus", "grad_cam_pp"),
        ("grad_cam_pp", "grad_cam_pp"),
        ("CAM", "cam"),
    ],
)
def test_common_spellings_resolve_to_canonical_keys(spelling, key):
    assert resolve_method(spelling).name == key


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(UnknownMethod, match="grad_cam_pp"):
        resolve_method("no_such_method")


def test_no_two_methods_share_a_spelling():
    for method in METHODS.values():
        for spelling in (method.name, *method.aliases):
            assert resolve_method(spelling) is method, spelling


def test_rectifier_rules_change_only_their_own_pass():
    """Guided backprop and deconvnet differ from the plain input gradient and from each other, and a plain
    saliency map computed after them is unchanged."""
    import time

    from service.engine.explainer import run_batch
    from service.engine.work import ExplainJob
    from tests.tiny_models import tiny_loaded

    model = tiny_loaded()
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(3))

    def raw(name: str) -> torch.Tensor:
        job = ExplainJob(image, (METHODS[name],), (2,), 1, "features", time.monotonic() + 60, "t")
        return run_batch(model, [job])[0].maps[0].map

    saliency_before = raw("saliency")
    guided, deconv = raw("guided_backprop"), raw("deconvnet")
    assert not torch.allclose(guided, saliency_before) and not torch.allclose(deconv, guided)
    torch.testing.assert_close(raw("saliency"), saliency_before)
