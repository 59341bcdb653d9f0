"""Multilabel models over HTTP: sigmoid probabilities, the labels a model predicts, one map per predicted label.

A seeded torchvision ResNet-18 with 20 labels, saved to a weights file and served from a store manifest that
says `task = "multilabel"`. Each label's map agrees with pytorch-grad-cam's Grad-CAM on that label's logit: the
library's `BinaryClassifierOutputTarget(1)` on the model's output for the label, as one binary classifier.
"""

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
from torch import nn

from model_store import LoadedModel, ModelStore
from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import THRESHOLD, as_displayed, pearson, trainable_copy
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
LABELS = 20
URL = "/v1/models/tags/explain"


@pytest.fixture(scope="module")
def tags(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    directory = tmp_path_factory.mktemp("multilabel")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=LABELS).state_dict(), directory / "tags.pth")
    (directory / "tags.toml").write_text(
        'name = "tags"\nsource = "torchvision:resnet18"\nweights = "tags.pth"\ntask = "multilabel"\n'
        f'num_classes = {LABELS}\ndefault_layer = "layer4"\nclassifier_layer = "fc"\n'
    )
    return ModelStore.discover(directory).load("tags", torch.device("cpu"))


@pytest.fixture(scope="module")
def expected(tags, cat_photo) -> tuple[torch.Tensor, np.ndarray]:
    """The photo's input tensor and its labels' sigmoid probabilities, computed here."""
    x = tags.preprocessing.to_tensor(cat_photo)[None]
    with torch.no_grad():
        return x, tags.module(x)[0].sigmoid().double().numpy()


def sent(cat_photo) -> dict[str, bytes]:
    return {"image": image_bytes(cat_photo, "PNG")}  # lossless: the service sees the tensor computed here


async def test_the_model_says_its_task_and_predicts_with_sigmoids(serve, tags, cat_photo, expected):
    _, probabilities = expected
    predicted = probabilities >= 0.5
    assert 0 < predicted.sum() < LABELS, "the seeded model should predict some labels and not others"
    async with serve({"tags": tags}) as client:
        info = (await client.get("/v1/models/tags")).json()
        answer = (await client.post("/v1/models/tags/predict", files=sent(cat_photo))).json()
        stricter = (await client.post("/v1/models/tags/predict?threshold=0.6", files=sent(cat_photo))).json()
    assert info["task"] == "multilabel"
    assert answer["task"] == "multilabel"
    positives = answer["positive_classes"]
    assert [c["index"] for c in positives] == [int(i) for i in np.argsort(-probabilities) if probabilities[i] >= 0.5]
    for c in positives:
        assert c["probability"] == pytest.approx(probabilities[c["index"]], rel=1e-5)
    assert [c["index"] for c in stricter["positive_classes"]] == [
        int(i) for i in np.argsort(-probabilities) if probabilities[i] >= 0.6
    ]
    assert sum(c["probability"] for c in answer["top_classes"]) > 1  # sigmoids, not a softmax


async def test_each_predicted_label_gets_a_map_equal_to_pytorch_grad_cam_s(serve, tags, cat_photo, expected):
    x, probabilities = expected
    async with serve({"tags": tags}) as client:
        answer = (await client.post(URL, params={"top_k": 3}, files=sent(cat_photo))).json()
        bounded = (await client.post(URL, params={"method": "cam"}, files=sent(cat_photo))).json()
    async with serve({"tags": tags}, max_classes_per_request=LABELS) as client:
        everything = (await client.post(URL, params={"method": "cam"}, files=sent(cat_photo))).json()
    best = [int(i) for i in np.argsort(-probabilities) if probabilities[i] >= 0.5]
    assert len(best) > 10, "the seeded model should predict more labels than the default bound of 10"
    assert [e["class"]["index"] for e in answer["explanations"]] == best[:3]
    assert [e["class"]["index"] for e in bounded["explanations"]] == best[:10]  # MAX_CLASSES_PER_REQUEST
    assert [e["class"]["index"] for e in everything["explanations"]] == best  # no top_k: every predicted label

    module = trainable_copy(tags)
    for explanation in answer["explanations"]:
        label = explanation["class"]["index"]
        one_label = nn.Sequential(module, LabelColumn(label))
        with GradCAM(model=one_label, target_layers=[module.layer4]) as cam:
            theirs = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)])[0]
        ours = as_displayed(torch.tensor(explanation["map"]["data"]), x.shape[-2:])
        agreement = pearson(ours, theirs)
        print(f"multilabel grad_cam label {label}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD


class LabelColumn(nn.Module):
    """The logits of one label, (B, K) -> (B,): a multilabel model seen as a binary classifier."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.label]


async def test_the_threshold_chooses_the_labels_explained(serve, tags, cat_photo, expected):
    _, probabilities = expected
    async with serve({"tags": tags}) as client:
        none = await client.post(URL, params={"threshold": 1}, files=sent(cat_photo))
        named = await client.post(URL, params={"threshold": 1, "class": 4}, files=sent(cat_photo))
        evaluated = await client.post(URL, params={"top_k": 1, "evaluate": "true"}, files=sent(cat_photo))
    assert none.status_code == 200 and none.json()["explanations"] == [] and none.json()["positive_classes"] == []
    assert [e["class"]["index"] for e in named.json()["explanations"]] == [4]  # a named label is explained anyway
    scores = evaluated.json()["explanations"][0]["evaluation"]
    assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1


async def test_a_classification_model_refuses_a_threshold_and_says_its_task(serve, noise_png):
    async with serve({"tiny": tiny_loaded()}) as client:
        info = (await client.get("/v1/models/tiny")).json()
        for path in ("explain", "predict"):
            refused = await client.post(
                f"/v1/models/tiny/{path}", params={"threshold": 0.5}, files={"image": noise_png}
            )
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_parameter"
            assert "multilabel" in refused.json()["error"]["message"]
        answer = (await client.post("/v1/models/tiny/predict", files={"image": noise_png})).json()
    assert info["task"] == "classification"
    assert answer["task"] == "classification" and answer["positive_classes"] is None
    assert sum(c["probability"] for c in answer["top_classes"]) <= 1 + 1e-6
