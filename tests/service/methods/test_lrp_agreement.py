"""LRP's composites agree with Zennit's (zennit 0.5.1, the newest on PyPI) on the same model and input: a seeded
torchvision ResNet-18 and VGG-16-BN with Zennit's own canonizers, and the built-in EfficientNet-Lite0 with
Zennit's generic canonizers (`NamedMergeBatchNorm` for each convolution and its batch norm, an
`AttributeCanonizer` that sums each inverted residual block's branches with Zennit's `Sum`, as its ResNet
canonizer does). Our maps come from the worker (`run_batch`), Zennit's from its `Gradient` attributor started
at the class logit, summed over the colour channels.

Two choices of ours that differ from Zennit out of the box, applied to the reference here:
- Zennit's merged batch norm stays in the model with statistics (0, 1), so it still divides by sqrt(1 + eps):
  the canonized model's logits drift from the model's (1.5% on the built-in model, whose batch norms have eps
  1e-3; 1e-5 and negligible in torchvision's). Ours computes the model's own function. The built-in model's
  reference batch norms get eps 0 once merged.
- ReLU6 is passed on as ReLU (as the other activations, Zennit's `Pass`); Zennit's `ExcitationBackprop` gives
  activations no rule, so ReLU6 would pass its gradient, 0 above 6. The reference gets `Pass` for ReLU6.
"""

import copy
import threading

import numpy as np
import pytest
import torch
import torchvision
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, NamedMergeBatchNorm
from zennit.composites import COMPOSITES as ZENNIT_COMPOSITES
from zennit.composites import ExcitationBackprop
from zennit.layer import Sum
from zennit.rules import Pass
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from model_store import LoadedModel, Preprocessing
from model_store.store import prepare_model
from service.methods.lrp import LRPOptions
from service.methods.lrp_rules import COMPOSITES
from tests.service.methods.test_reference_agreement import inputs_and_classes, our_raw_maps, pearson

ZENNIT_NAMED = [name for name in COMPOSITES if name != "epsilon"]
"""`epsilon` (captum's rules) agrees with captum: test_reference_agreement.py."""
THRESHOLD = 0.9999


def with_trained_statistics(module: nn.Module) -> nn.Module:
    """Batch norms as if trained (not identity), so that merging them is tested."""
    for batch_norm in module.modules():
        if isinstance(batch_norm, nn.BatchNorm2d):
            batch_norm.running_mean.uniform_(-0.5, 0.5)
            batch_norm.running_var.uniform_(0.5, 2.0)
            batch_norm.weight.data.uniform_(0.5, 1.5)
            batch_norm.bias.data.uniform_(-0.2, 0.2)
    return module.eval()


def seeded(name: str, module: nn.Module, side: int) -> LoadedModel:
    return prepare_model(
        name=name,
        source=f"torchvision:{name}",
        module=module.eval(),
        preprocessing=Preprocessing((side, side), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        labels_spec="imagenet",
        default_layer=None,
        classifier_layer=None,
        device=torch.device("cpu"),
    )


@pytest.fixture(scope="module")
def resnet18() -> LoadedModel:
    torch.manual_seed(0)
    return seeded("resnet18", with_trained_statistics(torchvision.models.resnet18(weights=None)), 224)


@pytest.fixture(scope="module")
def vgg16_bn() -> LoadedModel:
    """At 64 px (its adaptive pooling takes any side), to keep its 15 GFLOPs per pass out of the test's time."""
    torch.manual_seed(0)
    return seeded("vgg16_bn", with_trained_statistics(torchvision.models.vgg16_bn(weights=None)), 64)


class ExactMergeBatchNorm(NamedMergeBatchNorm):
    """Zennit's merge, with the merged batch norm exactly identity (eps 0) until the canonizer is removed."""

    def register(self, linears, batch_norm):
        super().register(linears, batch_norm)
        self.eps, batch_norm.eps = batch_norm.eps, 0.0

    def remove(self):
        super().remove()
        self.batch_norm.eps = self.eps

    def copy(self):
        return ExactMergeBatchNorm(self.name_map)


def summed_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's inverted residual and depthwise-separable blocks, their addition as Zennit's canonizers make it."""
    shortcut = x
    if isinstance(self, InvertedResidual):
        layers = ("conv_pw", "bn1", "conv_dw", "bn2", "aa", "se", "conv_pwl", "bn3")
    else:
        layers = ("conv_dw", "bn1", "aa", "se", "conv_pw", "bn2")
    for name in layers:
        x = getattr(self, name)(x)
    return self.canonizer_sum(torch.stack([shortcut, self.drop_path(x)], dim=-1))


def summed_blocks(_name: str, module: nn.Module) -> dict | None:
    if isinstance(module, (InvertedResidual, DepthwiseSeparableConv)) and module.has_skip:
        return {"forward": summed_block_forward.__get__(module), "canonizer_sum": Sum()}
    return None


def builtin_canonizer(module: nn.Module) -> CompositeCanonizer:
    pairs, convolution = [], None
    for name, child in module.named_modules():
        if isinstance(child, nn.BatchNorm2d):
            pairs.append(([convolution], name))
        elif isinstance(child, nn.Conv2d):
            convolution = name
    return CompositeCanonizer([ExactMergeBatchNorm(pairs), AttributeCanonizer(summed_blocks)])


CANONIZERS = {
    "resnet18": lambda _module: ResNetCanonizer(),
    "vgg16_bn": lambda _module: VGGCanonizer(),
    "builtin": builtin_canonizer,
}


def zennit_maps(model: LoadedModel, key: str, composite: str, x: torch.Tensor, classes: list[int]) -> list[np.ndarray]:
    module = copy.deepcopy(model.module)
    canonizer = CANONIZERS[key](module)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.preprocessing.mean, model.preprocessing.std))
    bounds = {"low": (-mean / std).expand_as(x[:1]), "high": ((1 - mean) / std).expand_as(x[:1])}
    if composite == "excitation_backprop":
        rules = ExcitationBackprop(layer_map=[(nn.ReLU6, Pass())], canonizers=[canonizer])
    else:
        rules = ZENNIT_COMPOSITES[composite](
            canonizers=[canonizer], **(bounds if composite == "epsilon_gamma_box" else {})
        )
    maps = []
    with Gradient(module, rules) as attributor:
        for i, class_index in enumerate(classes):
            _, relevance = attributor(x[i : i + 1], lambda out, c=class_index: torch.eye(out.shape[1])[[c]] * out)
            maps.append(relevance.sum(dim=1)[0].numpy())
    return maps


MODELS = [("resnet18", "resnet18"), ("vgg16_bn", "vgg16_bn"), ("builtin_model", "builtin")]


@pytest.mark.parametrize("composite", ZENNIT_NAMED)
@pytest.mark.parametrize(("model_fixture", "key"), MODELS)
def test_each_composite_agrees_with_zennit(model_fixture, key, composite, cat_photo, request):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    ours = our_raw_maps(model, "lrp", x, classes, (LRPOptions(composite=composite),))
    theirs = zennit_maps(model, key, composite, x, classes)
    for i in range(len(classes)):
        assert theirs[i].std() > 0
        agreement = pearson(ours[i].numpy(), theirs[i])
        print(f"{key} {composite} target {i}: pearson {agreement:.6f}")
        assert agreement >= THRESHOLD, (key, composite, i, agreement)


CONSERVING = ["epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "excitation_backprop"]
"""Every layer's rule hands on all the relevance it gets, up to its stabiliser, when no layer has a bias. Not
the alpha-beta composites: alpha times the positive and beta times the negative contributions' shares sum to
R only where a unit has both; where it has only positive ones, it hands on alpha R (2 R)."""


@pytest.mark.parametrize("composite", CONSERVING)
def test_the_input_relevance_sums_to_the_logit_in_a_network_without_biases(composite, cat_photo):
    torch.manual_seed(0)
    module = with_trained_statistics(torchvision.models.resnet18(weights=None))
    for batch_norm in module.modules():
        if isinstance(batch_norm, nn.BatchNorm2d):  # merged, they give the convolution a bias: none
            batch_norm.running_mean.zero_()
            batch_norm.bias.data.zero_()
    module.fc.bias.data.zero_()
    model = seeded("resnet18", module, 224)
    x, classes = inputs_and_classes(model, cat_photo, 2)
    with torch.no_grad():
        logits = model.module(x)
    ours = our_raw_maps(model, "lrp", x, classes, (LRPOptions(composite=composite),))
    for i, class_index in enumerate(classes):
        total, logit = float(ours[i].sum()), float(logits[i, class_index])
        print(f"{composite} target {i}: relevance {total:.6f}, logit {logit:.6f}")
        assert total == pytest.approx(logit, rel=1e-4), (composite, i)


def test_tracing_a_model_for_lrp_leaves_another_thread_s_forward_passes_alone():
    """torch.fx patches `nn.Module.__call__` for the whole process while it traces: a model worker loading (and
    tracing) must not break another worker's forward passes, as it did when several models started at once."""
    from service.methods.lrp_canonizers import lrp_obstacle

    served = torchvision.models.resnet18(weights=None).eval()
    errors, stop = [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                with torch.no_grad():
                    served(torch.randn(1, 3, 64, 64))
            except Exception as exc:  # noqa: BLE001 - the test reports whatever the forward raised
                errors.append(exc)
                return

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for _ in range(5):
            assert lrp_obstacle(torchvision.models.resnet18(weights=None).eval()) is None
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_models_traced_in_several_threads_at_once_leave_modules_as_they_were():
    """Two traces at once would each restore what the other patched in, leaving a tracer's wrapper in place."""
    from service.methods.lrp_canonizers import lrp_obstacle

    before = (nn.Module.__dict__["__call__"], nn.Module.__dict__["__getattr__"])
    threads = [
        threading.Thread(target=lrp_obstacle, args=(torchvision.models.resnet18(weights=None).eval(),))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (nn.Module.__dict__["__call__"], nn.Module.__dict__["__getattr__"]) == before
