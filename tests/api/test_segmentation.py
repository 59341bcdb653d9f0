"""Segmentation models over HTTP: the predicted mask and class shares, one map per class of the segmentation.

A seeded torchvision LRASPP (MobileNetV3-Large) with five classes, its class biases zeroed so that the random
network predicts several classes over the photo, saved to a weights file and served from a store manifest that
says `task = "segmentation"`. Each class's maps agree with pytorch-grad-cam's on the same network, loaded from the
same file and wrapped as in the library's segmentation tutorial, with its `SemanticSegmentationTarget`: the class's
logits summed over the pixels predicted as that class.
"""

import base64
import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import nn

from explain_client.cli import top_classes_line
from explain_client.models import PredictResponse
from model_store import LoadedModel, ModelStore
from model_store.errors import ModelLoadError
from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import THRESHOLD, SignCorrectedEigenCAM, as_displayed, pearson
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
ARCHITECTURE = "lraspp_mobilenet_v3_large"
LABELS = ["background", "cat", "floor", "wall", "blanket"]
URL = "/v1/models/scenes/explain"
REFERENCES = {"grad_cam": GradCAM, "grad_cam_pp": GradCAMPlusPlus, "eigen_cam": SignCorrectedEigenCAM}


def seeded_network() -> nn.Module:
    torch.manual_seed(0)
    network = torchvision.models.get_model(
        ARCHITECTURE, weights=None, weights_backbone=None, num_classes=len(LABELS)
    ).eval()
    with torch.no_grad():  # a random network's biases alone would give every pixel one class
        network.classifier.low_classifier.bias.zero_()
        network.classifier.high_classifier.bias.zero_()
    return network


def write_store(directory, task: str = "segmentation", source: str = ARCHITECTURE) -> None:
    torch.save(seeded_network().state_dict(), directory / "scenes.pth")
    (directory / "scenes.txt").write_text("\n".join(LABELS) + "\n")
    (directory / "scenes.toml").write_text(
        f'name = "scenes"\nsource = "torchvision:{source}"\nweights = "scenes.pth"\ntask = "{task}"\n'
        f'num_classes = {len(LABELS)}\nlabels = "scenes.txt"\ninput_size = [128, 160]\ndefault_layer = "backbone.16"\n'
    )


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    directory = tmp_path_factory.mktemp("segmentation")
    write_store(directory)
    return ModelStore.discover(directory).load("scenes", torch.device("cpu"))


class SegmentationModelOutputWrapper(nn.Module):
    """pytorch-grad-cam's tutorial wrapper: torchvision's segmentation models return a dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


@pytest.fixture(scope="module")
def reference(scenes) -> nn.Module:
    """The same network for the library: built afresh, loaded from the served model's weights."""
    network = torchvision.models.get_model(ARCHITECTURE, weights=None, weights_backbone=None, num_classes=len(LABELS))
    network.load_state_dict(scenes.module.state_dict())
    return SegmentationModelOutputWrapper(network.eval())


@pytest.fixture(scope="module")
def expected(scenes, reference, cat_photo) -> tuple[torch.Tensor, np.ndarray]:
    """The photo's input tensor and its (H, W) predicted classes, computed here."""
    x = scenes.preprocessing.to_tensor(cat_photo)[None]
    with torch.no_grad():
        return x, reference(x)[0].argmax(0).numpy()


def sent(cat_photo) -> dict[str, bytes]:
    return {"image": image_bytes(cat_photo, "PNG")}  # lossless: the service sees the tensor computed here


async def test_predict_answers_the_mask_and_each_class_s_share(serve, scenes, cat_photo, expected):
    _, predicted = expected
    pixels = np.bincount(predicted.ravel(), minlength=len(LABELS))
    assert (pixels > 0).sum() >= 3, "the seeded network should predict several classes"
    async with serve({"scenes": scenes}) as client:
        info = (await client.get("/v1/models/scenes")).json()
        answer = (await client.post("/v1/models/scenes/predict", files=sent(cat_photo))).json()
    assert info["task"] == "segmentation"
    assert {"grad_cam", "eigen_cam", "score_cam", "occlusion", "integrated_gradients"} <= set(info["methods"])
    assert not {"cam", "guided_backprop", "guided_grad_cam", "shapley_cam"} & set(info["methods"])
    assert answer["task"] == "segmentation" and answer["logits"] is None and answer["top_classes"] == []
    segmentation = answer["segmentation"]
    present = [int(c) for c in np.argsort(-pixels, kind="stable") if pixels[c] > 0]
    assert [c["index"] for c in segmentation["classes"]] == present
    assert [c["label"] for c in segmentation["classes"]] == [LABELS[c] for c in present]
    for c in segmentation["classes"]:
        assert c["share"] == pytest.approx(pixels[c["index"]] / predicted.size)
    mask = Image.open(io.BytesIO(base64.b64decode(segmentation["mask_png"])))
    assert mask.mode == "P" and list(mask.size) == segmentation["size"] == list(cat_photo.size)
    resized = Image.fromarray(predicted.astype(np.uint8)).resize(cat_photo.size, Image.Resampling.NEAREST)
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(resized))
    assert mask.getpalette()[3:6] == [128, 0, 0]  # PASCAL VOC's colour of class 1

    typed = PredictResponse.model_validate(answer)  # the client's answer and the command line's line
    np.testing.assert_array_equal(typed.segmentation.mask_array(), np.asarray(resized))
    first = segmentation["classes"][0]
    assert top_classes_line(typed).startswith(f"{first['label']} ({first['index']}) {first['share']:.1%} of pixels")


async def test_each_class_s_maps_equal_pytorch_grad_cam_s_semantic_segmentation_target(
    serve, scenes, reference, cat_photo, expected
):
    x, predicted = expected
    pixels = np.bincount(predicted.ravel(), minlength=len(LABELS))
    async with serve({"scenes": scenes}) as client:
        answer = (
            await client.post(URL, params={"method": ",".join(REFERENCES), "top_k": 3}, files=sent(cat_photo))
        ).json()
        named = (await client.post(URL, params={"class": "wall"}, files=sent(cat_photo))).json()
    best = [int(c) for c in np.argsort(-pixels, kind="stable")[:3] if pixels[c] > 0]
    assert [(e["method"], e["class"]["index"]) for e in answer["explanations"]] == [
        (method, c) for method in REFERENCES for c in best
    ]
    assert answer["segmentation"]["classes"][0]["index"] == best[0]
    assert [e["class"]["label"] for e in named["explanations"]] == ["wall"]

    layer = reference.model.backbone["16"]
    for explanation in answer["explanations"] + named["explanations"]:
        method, c = explanation["method"], explanation["class"]["index"]
        target = SemanticSegmentationTarget(c, (predicted == c).astype(np.float32))
        with REFERENCES[method](model=reference, target_layers=[layer]) as cam:
            theirs = cam(input_tensor=x, targets=[target])[0]
        ours = as_displayed(torch.tensor(explanation["map"]["data"]), x.shape[-2:])
        agreement = pearson(ours, theirs)
        print(f"segmentation {method} class {c}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD


def region_png(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """A mask image of `size` (width, height): white inside `box` (x0, y0, x1, y1), black elsewhere."""
    mask = Image.new("L", size)
    mask.paste(255, box)
    return image_bytes(mask, "PNG")


async def test_a_posted_mask_is_the_region_the_classes_logits_are_summed_over(
    serve, scenes, reference, cat_photo, expected
):
    x, predicted = expected
    width, height = cat_photo.size
    box = (width // 2, 0, width, height // 2)  # the top right quarter
    mask = region_png(cat_photo.size, box)
    region = np.zeros(predicted.shape, dtype=np.float32)  # the same quarter at the input size (128 x 160)
    region[: predicted.shape[0] // 2, predicted.shape[1] // 2 :] = 1
    inside = np.bincount(predicted[region > 0], minlength=len(LABELS))
    async with serve({"scenes": scenes}) as client:
        answer = (await client.post(URL, params={"top_k": 2}, files={**sent(cat_photo), "mask": mask})).json()
        as_json = (
            await client.post(
                URL,
                json={
                    "image": base64.b64encode(sent(cat_photo)["image"]).decode(),
                    "mask": base64.b64encode(mask).decode(),
                    "top_k": 2,
                },
            )
        ).json()
    best = [int(c) for c in np.argsort(-inside, kind="stable")[:2] if inside[c] > 0]
    assert [e["class"]["index"] for e in answer["explanations"]] == best  # the classes with most pixels in it
    for explanation, again in zip(answer["explanations"], as_json["explanations"], strict=True):
        np.testing.assert_allclose(explanation["map"]["data"], again["map"]["data"], rtol=1e-5, atol=1e-7)
        c = explanation["class"]["index"]
        with GradCAM(model=reference, target_layers=[reference.model.backbone["16"]]) as cam:
            theirs = cam(input_tensor=x, targets=[SemanticSegmentationTarget(c, region)])[0]
        ours = as_displayed(torch.tensor(explanation["map"]["data"]), x.shape[-2:])
        assert pearson(ours, theirs) >= THRESHOLD


async def test_a_mask_of_the_wrong_size_an_empty_one_or_one_for_a_classifier_is_a_400(
    serve, scenes, cat_photo, noise_png
):
    width, height = cat_photo.size
    async with serve({"scenes": scenes, "tiny": tiny_loaded()}) as client:
        smaller = await client.post(
            URL, files={**sent(cat_photo), "mask": region_png((width - 1, height), (0, 0, 10, 10))}
        )
        empty = await client.post(URL, files={**sent(cat_photo), "mask": region_png(cat_photo.size, (0, 0, 0, 0))})
        broken = await client.post(URL, files={**sent(cat_photo), "mask": b"not an image"})
        classifier = await client.post(
            "/v1/models/tiny/explain", files={"image": noise_png, "mask": region_png((64, 64), (0, 0, 8, 8))}
        )
        assert (await client.get("/healthz")).status_code == 200
    assert smaller.status_code == 400 and smaller.json()["error"]["code"] == "invalid_parameter"
    assert f"{width - 1}x{height}" in smaller.json()["error"]["message"]
    assert f"{width}x{height}" in smaller.json()["error"]["message"]
    assert empty.status_code == 400 and "no pixel" in empty.json()["error"]["message"]
    assert broken.status_code == 415 and broken.json()["error"]["code"] == "unsupported_image"
    assert classifier.status_code == 400 and "'mask' applies to segmentation models" in classifier.text


async def test_requests_a_segmentation_model_cannot_serve_are_refused(serve, scenes, cat_photo):
    async with serve({"scenes": scenes}) as client:
        for params, code, words in (
            ({"method": "deconvnet"}, "method_not_applicable", "not a segmentation class"),
            ({"evaluate": "true"}, "invalid_parameter", "segmentation model"),
            ({"threshold": 0.5}, "invalid_parameter", "multilabel"),
            ({"class": 5}, "unknown_class", "0..4"),
        ):
            refused = await client.post(URL, params=params, files=sent(cat_photo))
            assert refused.status_code == 400, params
            assert refused.json()["error"]["code"] == code and words in refused.json()["error"]["message"]
        assert (await client.get("/healthz")).status_code == 200


def test_a_manifest_whose_task_does_not_match_the_outputs_is_refused(tmp_path):
    write_store(tmp_path, task="classification")
    with pytest.raises(ModelLoadError, match='task = "segmentation"'):
        ModelStore.discover(tmp_path).load("scenes", torch.device("cpu"))


def test_an_auxiliary_head_in_the_weights_file_is_loaded_and_left_out_of_the_answer(tmp_path):
    torch.manual_seed(0)
    network = torchvision.models.get_model(
        "fcn_resnet50", weights=None, weights_backbone=None, num_classes=3, aux_loss=True
    )
    torch.save(network.state_dict(), tmp_path / "fcn.pth")
    (tmp_path / "fcn.toml").write_text(
        'name = "fcn"\nsource = "torchvision:fcn_resnet50"\nweights = "fcn.pth"\ntask = "segmentation"\n'
        'num_classes = 3\ninput_size = [64, 64]\ndefault_layer = "backbone.layer4"\n'
    )
    model = ModelStore.discover(tmp_path).load("fcn", torch.device("cpu"))
    assert "aux_classifier.0" in model.layers and model.default_layer == "backbone.layer4"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(model.module(x).numpy(), network.eval()(x)["out"].numpy(), rtol=1e-5, atol=1e-6)


async def test_score_cam_scores_each_masked_image_s_class_pixels_as_pytorch_grad_cam(
    serve, scenes, reference, cat_photo, expected
):
    """A method with passes of its own: each masked image's class logits summed over the photo's predicted mask
    of the class (at backbone.1, 16 channels)."""
    x, predicted = expected
    async with serve({"scenes": scenes}) as client:
        answer = (
            await client.post(URL, params={"method": "score_cam", "layer": "backbone.1"}, files=sent(cat_photo))
        ).json()
    (explanation,) = answer["explanations"]
    c = explanation["class"]["index"]
    target = SemanticSegmentationTarget(c, (predicted == c).astype(np.float32))
    with ScoreCAM(model=reference, target_layers=[reference.model.backbone["1"]]) as cam:
        theirs = cam(input_tensor=x, targets=[target])[0]
    ours = as_displayed(torch.tensor(explanation["map"]["data"]), x.shape[-2:])
    assert pearson(ours, theirs) >= THRESHOLD


async def test_every_method_the_model_lists_answers_its_task(serve, scenes, cat_photo):
    """Each method that GET /v1/models/{model} lists runs on this task's targets, at a small layer with few
    samples and steps."""
    cheap = {"samples": 2, "steps": 2, "stride": 64, "window": 64, "layer": "backbone.4", **{}}
    async with serve({"scenes": scenes}) as client:
        methods = (await client.get("/v1/models/scenes")).json()["methods"]
        for method in methods:
            answer = await client.post(URL, params={"method": method, **cheap}, files=sent(cat_photo))
            assert answer.status_code == 200, (method, answer.text[:300])
            assert [e["method"] for e in answer.json()["explanations"]] == [method]
