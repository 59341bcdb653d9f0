"""Maps agree with the reference implementation pytorch-grad-cam (PyPI `grad-cam`) on the same input tensor.

The reference gets its own deep copy of the model with trainable parameters (it calls `backward()`), so the
warm model is never touched. Our raw map goes through the reference's own display steps (ReLU, bilinear
upsampling to the input, min-max) and the two are compared by Pearson correlation.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from model_store import LoadedModel, Preprocessing
from model_store.store import prepare_model
from service.encoding import normalize_map
from service.explainer import run_batch
from service.jobs import ExplainJob
from service.methods import METHODS

REFERENCE = {"grad_cam": GradCAM, "grad_cam_pp": GradCAMPlusPlus, "cam": GradCAM}  # CAM == Grad-CAM * Z, up to ReLU


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


def reference_maps(model: LoadedModel, method: str, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    module = copy.deepcopy(model.module)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    layer = module.get_submodule(model.default_layer)
    with REFERENCE[method](model=module, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def our_maps(model: LoadedModel, method: str, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    jobs = [
        ExplainJob(x[i], (METHODS[method],), (c,), 1, model.default_layer, float("inf"), "ref")
        for i, c in enumerate(classes)
    ]
    maps = []
    for result in run_batch(model, jobs):
        heat = normalize_map(result.maps[0].map)[None, None]
        up = F.interpolate(heat, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        maps.append(normalize_map(up).numpy())
    return np.stack(maps)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("method", ["cam", "grad_cam", "grad_cam_pp"])
@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
def test_maps_agree_with_pytorch_grad_cam(method, model_fixture, request, cat_photo):
    model: LoadedModel = request.getfixturevalue(model_fixture)
    x = torch.stack([model.preprocessing.to_tensor(cat_photo), model.preprocessing.to_tensor(cat_photo.rotate(90))])
    with torch.no_grad():
        top = model.module(x).argmax(dim=1).tolist()
    classes = [top[0], 3]  # the predicted class and an arbitrary other one
    ours = our_maps(model, method, x, classes)
    theirs = reference_maps(model, method, x, classes)
    for i in range(len(classes)):
        assert theirs[i].std() > 0, "reference map is constant; the comparison would mean nothing"
        assert pearson(ours[i], theirs[i]) >= 0.99, (method, model_fixture, i)
