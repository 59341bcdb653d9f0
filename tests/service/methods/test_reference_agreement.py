"""Maps agree with the reference implementations on the same model and input tensor.

- pytorch-grad-cam (PyPI `grad-cam`) for the CAM family; CAM against its Grad-CAM, which equals CAM up to
  the ReLU and the constant 1/Z on a GAP + linear head. Our raw map goes through the reference's display
  steps (ReLU, bilinear upsampling to the input, min-max) before the comparison.
- captum for the input-resolution methods; captum's (3, H, W) attributions are reduced over colour channels
  as each method's raw-map definition says, and compared with our raw map.

The references get their own deep copy of the model with trainable parameters (they call `backward()` or
register hooks), so the warm model is never touched. Agreement is the Pearson correlation of the two maps.
"""

import copy
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import (
    LRP,
    Deconvolution,
    DeepLift,
    DeepLiftShap,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR, nonlinear
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
from torch import nn

from model_store import LoadedModel, Preprocessing
from model_store.store import prepare_model
from service.engine.explainer import run_batch
from service.engine.work import ExplainJob
from service.imaging.encoding import normalize_map
from service.methods import METHODS
from service.methods.deeplift_shap import DeepLiftShapOptions, baseline_distribution
from service.methods.feature_ablation import FeatureAblationOptions
from service.methods.gradient_shap import GradientShapOptions
from service.methods.kernel_shap import KernelShapOptions
from service.methods.lime import RIDGE, LimeOptions, lime_kernel
from service.methods.lrp import LRPOptions
from service.methods.patches import patch_mask
from service.methods.smoothgrad import SmoothGradOptions

THRESHOLD = 0.99
# One forward pass per channel of the layer (1280 on the built-in model): these two are compared on one image
# and class, at 112 px instead of 224 (both models are fully convolutional), to keep CI short.
MULTI_PASS = {"score_cam", "ablation_cam"}
MULTI_PASS_SIZE = (112, 112)


class SignCorrectedEigenCAM(EigenCAM):
    """The reference's Eigen-CAM with the library's own sign correction (Seg-Eigen-CAM eq. 13), which we
    apply too: plain SVD leaves the sign of the projection arbitrary."""

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(activations)


CAM_REFERENCES = {
    "cam": GradCAM,
    "grad_cam": GradCAM,
    "grad_cam_pp": GradCAMPlusPlus,
    "xgrad_cam": XGradCAM,
    "layer_cam": LayerCAM,
    "hires_cam": HiResCAM,
    "eigen_cam": SignCorrectedEigenCAM,
    "score_cam": ScoreCAM,
    "ablation_cam": AblationCAM,
}


class CaptumReLU6(nn.ReLU):
    """ReLU6 that captum recognises as a rectifier: captum's guided backprop and deconvolution only hook
    nn.ReLU modules, while ours treat nn.ReLU6 (the built-in model's activation) as a rectifier too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x)


class UnsharedReLU(nn.Module):
    """A ResNet block's one ReLU module, called twice per forward pass, as two modules: captum's DeepLift keeps
    a nonlinearity's input and output on the module and refuses (or mixes up) a module used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.calls = nn.ReLU(), nn.ReLU(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.first if self.calls % 2 else self.second)(x)


def deeplift_copy(model: LoadedModel) -> nn.Module:
    """A trainable copy for captum's DeepLift: each ReLU module used once per pass."""
    module = trainable_copy(model)
    for block in module.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.relu = UnsharedReLU()
    return module


def trainable_copy(model: LoadedModel) -> nn.Module:
    module = copy.deepcopy(model.module)
    for child in list(module.modules()):
        for child_name, grandchild in list(child.named_children()):
            if isinstance(grandchild, nn.ReLU6):
                setattr(child, child_name, CaptumReLU6())
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


def captum_map(
    method: str, model: LoadedModel, x: torch.Tensor, classes: list[int], options: object | None = None
) -> np.ndarray:
    """The reference's maps, with our method's options (its defaults when None)."""
    options = options or METHODS[method].options_type()
    module = trainable_copy(model)
    target = torch.tensor(classes)
    layer = module.get_submodule(model.default_layer)
    black = (-torch.tensor(model.preprocessing.mean) / torch.tensor(model.preprocessing.std)).view(1, 3, 1, 1)
    if method == "saliency":
        maps = Saliency(module).attribute(x, target=target).abs().amax(dim=1)
    elif method == "gradient_x_input":
        maps = InputXGradient(module).attribute(x, target=target).sum(dim=1)
    elif method == "guided_backprop":
        maps = GuidedBackprop(module).attribute(x, target=target).abs().amax(dim=1)
    elif method == "deconvnet":
        maps = Deconvolution(module).attribute(x, target=target).abs().amax(dim=1)
    elif method == "guided_grad_cam":
        maps = GuidedGradCam(module, layer).attribute(x, target=target, interpolate_mode="bilinear").abs().amax(dim=1)
    elif method == "integrated_gradients":
        baselines = black.expand_as(x)
        maps = (
            IntegratedGradients(module)
            .attribute(x, baselines=baselines, target=target, n_steps=options.steps)
            .sum(dim=1)
        )
    elif method == "occlusion":
        window, stride = (3, options.window, options.window), (3, options.stride, options.stride)
        maps = Occlusion(module).attribute(x, sliding_window_shapes=window, strides=stride, baselines=0, target=target)[
            :, 0
        ]
    elif method == "smoothgrad":
        sigmas = tuple(options.noise * float(image.max() - image.min()) for image in x)
        maps = (
            torch.cat(
                [
                    NoiseTunnel(Saliency(module)).attribute(
                        x[i : i + 1],
                        nt_type=options.nt_type,
                        nt_samples=options.samples,
                        stdevs=sigmas[i],
                        target=classes[i],
                    )
                    for i in range(len(x))
                ]
            )
            .abs()
            .amax(dim=1)
        )
    elif method in ("feature_ablation", "lime", "kernel_shap"):
        maps = captum_patch_map(method, model, x, classes, options)
    elif method in ("deeplift", "deeplift_shap", "gradient_shap"):
        maps = captum_shap_map(method, model, x, classes, options)
    else:
        raise KeyError(method)
    return maps.detach().numpy()


def captum_patch_map(method: str, model: LoadedModel, x: torch.Tensor, classes: list[int], options) -> torch.Tensor:
    """captum's perturbation methods on our grid of patches (the feature mask), the fill as their baseline; one
    colour channel (all three carry the same value). Lime with the surrogate we fit (ridge, alpha 1, and the
    LIME authors' kernel, not captum's defaults); Lime and KernelShap draw from the global generator seeded
    with our seed, in the order ours draws."""
    module = trainable_copy(model)
    mask, _count = patch_mask(x.shape[-2], x.shape[-1], options.window, x.device)
    black = (-torch.tensor(model.preprocessing.mean) / torch.tensor(model.preprocessing.std)).view(1, 3, 1, 1)
    baselines = (black if options.fill == "black" else torch.zeros_like(black)).expand_as(x)
    target = torch.tensor(classes)
    arguments = {
        "baselines": baselines,
        "target": target,
        "feature_mask": mask[None, None],
        "perturbations_per_eval": 16,
    }
    if method == "feature_ablation":
        return FeatureAblation(module).attribute(x, **arguments)[:, 0]
    maps = []
    for i in range(len(x)):
        one = {**arguments, "baselines": baselines[i : i + 1], "target": classes[i]}
        torch.manual_seed(options.seed)
        if method == "lime":
            lime = Lime(
                module,
                interpretable_model=SkLearnRidge(alpha=RIDGE),
                similarity_func=lambda _x, _p, sample, **_: float(lime_kernel(sample.float())[0]),
            )
            maps.append(lime.attribute(x[i : i + 1], n_samples=options.samples, **one)[0, 0])
        else:
            maps.append(KernelShap(module).attribute(x[i : i + 1], n_samples=options.samples, **one)[0, 0])
    return torch.stack(maps)


def captum_shap_map(method: str, model: LoadedModel, x: torch.Tensor, classes: list[int], options) -> torch.Tensor:
    """captum's DeepLift family, summed over colour channels. captum has no DeepLIFT rule for ReLU6 (the built-in
    model's activation) and back-propagates its gradient; it is given its own Rescale rule for elementwise
    nonlinearities (`nonlinear`) on the ReLU6 stand-in, as the paper prescribes for every nonlinearity and as ours
    does. The random draws of gradient_shap are shared: our generator draws the baselines then the noise, captum
    draws the noise from the global generator after the same baselines; both draw the baseline choices, then the
    path points from numpy's legacy generator with the same seed."""
    target = torch.tensor(classes)
    black = (-torch.tensor(model.preprocessing.mean) / torch.tensor(model.preprocessing.std)).view(1, 3, 1, 1)
    if method == "gradient_shap":
        generator = torch.Generator().manual_seed(options.seed)
        baselines = baseline_distribution(options.samples, x.shape[1:], generator, x.device)
        torch.manual_seed(options.seed)
        torch.randn(baselines.shape)  # the draws of the baselines
        np.random.seed(options.seed)
        sigma = options.noise * float(x.max() - x.min())
        return (
            GradientShap(trainable_copy(model))
            .attribute(x, baselines=baselines, n_samples=options.samples, stdevs=sigma, target=target)
            .sum(dim=1)
        )
    with mock.patch.dict(SUPPORTED_NON_LINEAR, {CaptumReLU6: nonlinear}):
        module = deeplift_copy(model)
        if method == "deeplift":
            baselines = (black if options.baseline == "black" else torch.zeros_like(black)).expand_as(x)
            return DeepLift(module).attribute(x, baselines=baselines, target=target).sum(dim=1)
        generator = torch.Generator().manual_seed(options.seed)
        baselines = baseline_distribution(options.samples, x.shape[1:], generator, x.device)
        return DeepLiftShap(module).attribute(x, baselines=baselines, target=target).sum(dim=1)


def grad_cam_library_map(method: str, model: LoadedModel, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    module = trainable_copy(model)
    layer = module.get_submodule(model.default_layer)
    with CAM_REFERENCES[method](model=module, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def our_raw_maps(
    model: LoadedModel, method: str, x: torch.Tensor, classes: list[int], options: tuple[object, ...] = ()
) -> list[torch.Tensor]:
    jobs = [
        ExplainJob(x[i], (METHODS[method],), (c,), 1, model.default_layer, float("inf"), "ref", options=options)
        for i, c in enumerate(classes)
    ]
    return [result.maps[0].map for result in run_batch(model, jobs, chunk_size=64)]


def as_displayed(raw: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The reference's display steps: ReLU + min-max, bilinear upsampling, min-max."""
    heat = torch.from_numpy(normalize_map(raw))[None, None]
    return normalize_map(F.interpolate(heat, size=size, mode="bilinear", align_corners=False)[0, 0])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def seeded_resnet18() -> LoadedModel:
    torch.manual_seed(0)
    return prepare_model(
        name="resnet18",
        source="torchvision:resnet18",
        module=torchvision.models.resnet18(weights=None),
        preprocessing=Preprocessing((224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        labels_spec="imagenet",
        default_layer="layer4",
        classifier_layer="fc",
        device=torch.device("cpu"),
    )


def inputs_and_classes(model: LoadedModel, photo, count: int) -> tuple[torch.Tensor, list[int]]:
    """The cat photo (and a rotated copy), their predicted class and an arbitrary other class."""
    x = torch.stack([model.preprocessing.to_tensor(photo), model.preprocessing.to_tensor(photo.rotate(90))])
    with torch.no_grad():
        top = model.module(x).argmax(dim=1).tolist()
    return x[:count], [top[0], 3][:count]


MODELS = ["builtin_model", "seeded_resnet18"]


@pytest.mark.parametrize("method", list(CAM_REFERENCES))
@pytest.mark.parametrize("model_fixture", MODELS)
def test_cam_family_agrees_with_pytorch_grad_cam(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 1 if method in MULTI_PASS else 2)
    if method in MULTI_PASS:
        x = F.interpolate(x, size=MULTI_PASS_SIZE, mode="bilinear", antialias=True)
    ours = our_raw_maps(model, method, x, classes)
    theirs = grad_cam_library_map(method, model, x, classes)
    for i in range(len(classes)):
        assert theirs[i].std() > 0, "reference map is constant; the comparison would mean nothing"
        agreement = pearson(as_displayed(ours[i], x.shape[-2:]), theirs[i])
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


DETERMINISTIC_CAPTUM = [
    "saliency",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "guided_grad_cam",
    "integrated_gradients",
    "occlusion",
]


@pytest.mark.parametrize("method", DETERMINISTIC_CAPTUM)
@pytest.mark.parametrize("model_fixture", MODELS)
def test_input_methods_agree_with_captum(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    count = 1 if method == "occlusion" else 2
    x, classes = inputs_and_classes(model, cat_photo, count)
    ours = our_raw_maps(model, method, x, classes)
    theirs = captum_map(method, model, x, classes)
    for i in range(len(classes)):
        assert theirs[i].std() > 0
        agreement = pearson(ours[i].numpy(), theirs[i])
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


@pytest.mark.parametrize("model_fixture", MODELS)
def test_smoothgrad_agrees_with_captum_noise_tunnel_with_the_same_seed(model_fixture, request, cat_photo):
    """SmoothGrad is a Monte Carlo estimate, so the comparison fixes the noise: our noise comes from a
    generator seeded with the request's `seed` (0 by default), and captum's NoiseTunnel draws its standard
    normals from the global generator, here seeded with 0 too: the same draws in the same order, so the
    deterministic bound applies. A different seed gives a visibly different estimate (the noise matters)."""
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 1)
    options = SmoothGradOptions(samples=16)
    torch.manual_seed(0)
    theirs = captum_map("smoothgrad", model, x, classes, options)[0]
    ours = our_raw_maps(model, "smoothgrad", x, classes, (options,))[0].numpy()
    other_seed = our_raw_maps(model, "smoothgrad", x, classes, (SmoothGradOptions(samples=16, seed=1),))[0].numpy()
    agreement = pearson(ours, theirs)
    print(f"{model_fixture} smoothgrad: pearson {agreement:.5f} (seed 1: {pearson(other_seed, theirs):.5f})")
    assert agreement >= THRESHOLD
    assert pearson(other_seed, theirs) < agreement


@pytest.mark.parametrize("nt_type", ["smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("model_fixture", MODELS)
def test_smoothgrad_noise_tunnel_types_agree_with_captum_with_the_same_seed(nt_type, model_fixture, request, cat_photo):
    """`nt_type` pools the noisy samples as captum's NoiseTunnel does (mean of squares, variance); same seed as
    above, so the same draws. Each differs from the plain mean (the option changes the map)."""
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 1)
    options = SmoothGradOptions(samples=8, nt_type=nt_type)
    torch.manual_seed(0)
    theirs = captum_map("smoothgrad", model, x, classes, options)[0]
    ours = our_raw_maps(model, "smoothgrad", x, classes, (options,))[0].numpy()
    plain = our_raw_maps(model, "smoothgrad", x, classes, (SmoothGradOptions(samples=8),))[0].numpy()
    agreement = pearson(ours, theirs)
    print(f"{model_fixture} smoothgrad {nt_type}: pearson {agreement:.5f} (plain mean: {pearson(plain, theirs):.5f})")
    assert agreement >= THRESHOLD
    assert not np.allclose(ours, plain)


def test_input_x_gradient_is_captum_s_name_for_gradient_x_input():
    """captum's InputXGradient is `input * gradient`, which `gradient_x_input` computes (agreement above): the
    captum name is an alias of the same method, not a second one."""
    from service.methods import resolve_method

    for spelling in ("input_x_gradient", "InputXGradient", "input-x-gradient"):
        assert resolve_method(spelling) is METHODS["gradient_x_input"]


SHAP_OPTIONS = {
    "deeplift": None,
    "deeplift_shap": DeepLiftShapOptions(samples=4),
    "gradient_shap": GradientShapOptions(samples=8, noise=0.1),
}


@pytest.mark.parametrize("method", list(SHAP_OPTIONS))
@pytest.mark.parametrize("model_fixture", MODELS)
def test_deeplift_and_shap_methods_agree_with_captum(method, model_fixture, request, cat_photo):
    """DeepLift is deterministic; deeplift_shap too, given the baselines (ours, from the seed, handed to captum);
    gradient_shap with the same seeded draws (see `captum_shap_map`)."""
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2 if method == "deeplift" else 1)
    options = SHAP_OPTIONS[method] or METHODS[method].options_type()
    ours = our_raw_maps(model, method, x, classes, (options,))
    theirs = captum_map(method, model, x, classes, options)
    for i in range(len(classes)):
        assert theirs[i].std() > 0
        agreement = pearson(ours[i].numpy(), theirs[i])
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


PATCH_OPTIONS = {
    "feature_ablation": FeatureAblationOptions(window=56),
    "lime": LimeOptions(samples=32, window=56),
    "kernel_shap": KernelShapOptions(samples=32, window=56),
}


@pytest.mark.parametrize("method", list(PATCH_OPTIONS))
@pytest.mark.parametrize("model_fixture", MODELS)
def test_patch_perturbation_methods_agree_with_captum(method, model_fixture, request, cat_photo):
    """On a 4 x 4 grid of 56-pixel patches (16 features): feature ablation is deterministic; LIME and KernelSHAP
    draw the same samples as captum (same seed, same order of draws) and fit the same surrogate."""
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2 if method == "feature_ablation" else 1)
    options = PATCH_OPTIONS[method]
    ours = our_raw_maps(model, method, x, classes, (options,))
    theirs = captum_map(method, model, x, classes, options)
    for i in range(len(classes)):
        assert theirs[i].std() > 0
        agreement = pearson(ours[i].numpy(), theirs[i])
        print(f"{model_fixture} {method} target {i}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, model_fixture, i, agreement)


class PlainCNN(nn.Module):
    """A VGG-like chain (conv, batch norm, ReLU, max pooling; average pooling and a linear head): the kind of
    model LRP's rules cover."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for inputs, outputs in ((3, 16), (16, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def seeded_plain_cnn() -> LoadedModel:
    torch.manual_seed(0)
    module = PlainCNN()
    for batch_norm in module.modules():
        if isinstance(batch_norm, nn.BatchNorm2d):  # statistics as if trained, so that the layer is not identity
            batch_norm.running_mean.uniform_(-0.5, 0.5)
            batch_norm.running_var.uniform_(0.5, 2.0)
    return prepare_model(
        name="plain_cnn",
        source="test:PlainCNN",
        module=module.eval(),
        preprocessing=Preprocessing((224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        labels_spec="imagenet",
        default_layer="features",
        classifier_layer="fc",
        device=torch.device("cpu"),
    )


def test_lrp_agrees_with_captum_on_a_plain_cnn(cat_photo):
    """captum's LRP with its default rules (epsilon 1e-9 on every layer, batch norm included): the `epsilon`
    composite on the model as it is (`canonize=none`); ReLUs not in place (captum's backward hooks refuse
    in-place outputs). Merging the batch norms (`canonize=auto`, the default) changes nothing under the epsilon
    rule: a batch norm's relevance R y' / y' at its input is what the merged layer passes on."""
    model = seeded_plain_cnn()
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, "lrp", x, classes, (LRPOptions(canonize="none"),))
    merged = our_raw_maps(model, "lrp", x, classes)
    module = trainable_copy(model)
    theirs = LRP(module).attribute(x, target=torch.tensor(classes)).sum(dim=1).detach().numpy()
    for i in range(len(classes)):
        assert theirs[i].std() > 0
        agreement = pearson(ours[i].numpy(), theirs[i])
        print(
            f"plain_cnn lrp target {i}: pearson {agreement:.5f}, canonized {pearson(merged[i].numpy(), theirs[i]):.5f}"
        )
        assert agreement >= THRESHOLD, (i, agreement)
        assert pearson(merged[i].numpy(), theirs[i]) >= THRESHOLD
