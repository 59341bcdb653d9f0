"""Detection models over HTTP: the detections in the image's pixels, one map per detection.

A seeded torchvision Faster R-CNN (MobileNetV3-Large 320 FPN) with four labels, saved to a weights file and
served from a store manifest that says `task = "detection"`. A random detector's activations fade through its
layers, so the seeded one is made to see: its batch norms take their statistics from the photo, its FPN outputs
are scaled to unit spread and its class scores sharpened (`seeded_detector`). Each detection's maps agree with
pytorch-grad-cam's on the same network, loaded from the same file, with the library's `FasterRCNNBoxScoreTarget`
for the detection's label and box.
"""

import asyncio
import logging
import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform
from torch import nn

from explain_client.cli import top_classes_line
from explain_client.models import Explanation, PredictResponse
from model_store import LoadedModel, ModelStore
from model_store.errors import ModelLoadError
from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import THRESHOLD, SignCorrectedEigenCAM, as_displayed, pearson
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
ARCHITECTURE = "fasterrcnn_mobilenet_v3_large_320_fpn"
LABELS = ["background", "cat", "eye", "ear"]
INPUT_SIZE = (224, 320)  # height, width
LAYER = "backbone.fpn.layer_blocks.0"
URL = "/v1/models/boxes/explain"
REFERENCES = {"grad_cam": GradCAM, "grad_cam_pp": GradCAMPlusPlus, "eigen_cam": SignCorrectedEigenCAM}
SCORE_THRESHOLD = 0.4
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's detectors' normalisation


def content_size(photo: Image.Image) -> tuple[int, int]:
    """The (width, height) of the photo in the detector's input: scaled to fit, its aspect ratio kept."""
    scale = min(INPUT_SIZE[1] / photo.width, INPUT_SIZE[0] / photo.height)
    return round(photo.width * scale), round(photo.height * scale)


def photo_tensor(photo: Image.Image) -> torch.Tensor:
    """The photo as the service feeds a detector: letterboxed into the input size (scaled to fit, the rest the
    colour the detector normalises to 0, its ImageNet mean), in [0, 1] (the model normalises)."""
    width, height = content_size(photo)
    resized = np.asarray(photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    canvas = np.empty((*INPUT_SIZE, 3), dtype=np.float32)
    canvas[...] = IMAGENET_MEAN
    canvas[:height, :width] = resized / np.float32(255)
    return torch.from_numpy(canvas).permute(2, 0, 1)[None]


def theirs_where_ours_is(theirs: np.ndarray, ours: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The part of the library's map (the layer's whole grid of `grid` cells stretched over the input) under the
    cells the service answers (those that cover the photo)."""
    rows, cols = ours.shape
    return theirs[: round(rows * INPUT_SIZE[0] / grid[0]), : round(cols * INPUT_SIZE[1] / grid[1])]


def seeded_detector(photo: Image.Image) -> nn.Module:
    torch.manual_seed(0)
    network = torchvision.models.get_model(
        ARCHITECTURE, weights=None, weights_backbone=None, num_classes=len(LABELS)
    ).eval()
    with torch.no_grad():
        batch = network.transform(list(photo_tensor(photo)))[0].tensors
        for module in network.backbone.body.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1.0  # the statistics of this one batch
        network.backbone.body.train()(batch)
        network.eval()
        spread = float(torch.cat([level.flatten() for level in network.backbone(batch).values()]).std())
        for parameter in network.backbone.fpn.layer_blocks.parameters():
            parameter.div_(spread)
        network.roi_heads.box_predictor.cls_score.weight.mul_(3)
    return network


def write_store(directory, photo: Image.Image) -> None:
    torch.save(seeded_detector(photo).state_dict(), directory / "boxes.pth")
    (directory / "boxes.txt").write_text("\n".join(LABELS) + "\n")
    (directory / "boxes.toml").write_text(
        f'name = "boxes"\nsource = "torchvision:{ARCHITECTURE}"\nweights = "boxes.pth"\ntask = "detection"\n'
        f'num_classes = {len(LABELS)}\nlabels = "boxes.txt"\ninput_size = {list(INPUT_SIZE)}\n'
        f'default_layer = "{LAYER}"\n'
    )


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory, cat_photo) -> LoadedModel:
    directory = tmp_path_factory.mktemp("detection")
    write_store(directory, cat_photo)
    return ModelStore.discover(directory).load("boxes", torch.device("cpu"))


@pytest.fixture(scope="module")
def reference(boxes) -> nn.Module:
    """The same network for the library: built afresh, loaded from the served model's weights."""
    network = torchvision.models.get_model(ARCHITECTURE, weights=None, weights_backbone=None, num_classes=len(LABELS))
    network.load_state_dict(boxes.module.state_dict())
    return network.eval()


@pytest.fixture(scope="module")
def expected(reference, cat_photo) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The photo's input tensor and the network's detections that reach the score threshold, computed here."""
    x = photo_tensor(cat_photo)
    with torch.no_grad():
        output = reference(x)[0]
    kept = output["scores"] >= SCORE_THRESHOLD
    return x, {key: value[kept].numpy() for key, value in output.items()}


def sent(cat_photo) -> dict[str, bytes]:
    return {"image": image_bytes(cat_photo, "PNG")}  # lossless: the service sees the tensor computed here


async def test_predict_lists_the_detections_in_the_image_s_pixels(serve, boxes, cat_photo, expected):
    _, found = expected
    assert 2 <= len(found["scores"]), "the seeded detector should find a few boxes"
    async with serve({"boxes": boxes}) as client:
        info = (await client.get("/v1/models/boxes")).json()
        answer = (
            await client.post(
                "/v1/models/boxes/predict", params={"score_threshold": SCORE_THRESHOLD}, files=sent(cat_photo)
            )
        ).json()
        default = (await client.post("/v1/models/boxes/predict", files=sent(cat_photo))).json()
    assert info["task"] == "detection" and {"eigen_cam", "score_cam", "occlusion"} <= set(info["methods"])
    assert not {"cam", "guided_backprop"} & set(info["methods"])
    assert answer["task"] == "detection" and answer["logits"] is None and answer["top_classes"] == []
    detections = answer["detections"]
    assert [d["index"] for d in detections] == list(range(len(found["scores"])))
    assert [d["class"]["index"] for d in detections] == found["labels"].tolist()
    assert [d["class"]["label"] for d in detections] == [LABELS[i] for i in found["labels"]]
    np.testing.assert_allclose([d["score"] for d in detections], found["scores"], rtol=1e-5)
    content = content_size(cat_photo)
    scale = np.array([cat_photo.width / content[0], cat_photo.height / content[1]] * 2)
    np.testing.assert_allclose([d["box"] for d in detections], found["boxes"] * scale, rtol=1e-4, atol=1e-3)
    assert [d["score"] for d in default["detections"]] == [d["score"] for d in detections if d["score"] >= 0.5]
    line = top_classes_line(PredictResponse.model_validate(answer))  # the client's answer, the command line's line
    assert line.startswith(f"#0 {detections[0]['class']['label']} {detections[0]['score']:.1%} at [")


async def test_each_detection_s_maps_equal_pytorch_grad_cam_s_box_score_target(
    serve, boxes, reference, cat_photo, expected
):
    x, found = expected
    async with serve({"boxes": boxes}) as client:
        answer = (
            await client.post(
                URL,
                params={"method": ",".join(REFERENCES), "score_threshold": SCORE_THRESHOLD, "top_k": 2},
                files=sent(cat_photo),
            )
        ).json()
        named = (
            await client.post(
                URL, params={"score_threshold": SCORE_THRESHOLD, "detection": "1,0"}, files=sent(cat_photo)
            )
        ).json()
    assert [(e["method"], e["detection"]) for e in answer["explanations"]] == [
        (method, d) for method in REFERENCES for d in (0, 1)
    ]
    assert [e["detection"] for e in named["explanations"]] == [1, 0]
    for explanation in answer["explanations"] + named["explanations"]:
        d = explanation["detection"]
        assert explanation["class"]["index"] == found["labels"][d]
        target = FasterRCNNBoxScoreTarget(labels=[found["labels"][d]], bounding_boxes=[found["boxes"][d]])
        layer = reference.get_submodule(LAYER)
        with REFERENCES[explanation["method"]](model=reference, target_layers=[layer]) as cam:
            theirs = cam(input_tensor=x, targets=[target])[0]
        ours = np.asarray(explanation["map"]["data"])
        theirs = theirs_where_ours_is(theirs, ours, boxes.layer_shapes[LAYER][-2:])
        agreement = pearson(as_displayed(torch.tensor(ours), theirs.shape), theirs)
        print(f"detection {explanation['method']} #{d}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD


async def test_the_fpn_as_one_layer_is_read_as_pytorch_grad_cam_s_tutorial_reads_it(
    serve, boxes, reference, cat_photo, expected
):
    """`layer=backbone` (the FPN's levels, a dict) seen through the library's `fasterrcnn_reshape_transform`, as its
    Faster R-CNN tutorial explains detections with Eigen-CAM; methods that need the gradient at the layer are a
    400 there, since the model never computes that grid."""
    x, found = expected
    async with serve({"boxes": boxes}) as client:
        info = (await client.get("/v1/models/boxes")).json()
        answer = await client.post(
            URL,
            params={"method": "eigen_cam", "layer": "backbone", "score_threshold": SCORE_THRESHOLD, "top_k": 2},
            files=sent(cat_photo),
        )
        refused = await client.post(
            URL, params={"method": "eigen_cam,grad_cam", "layer": "backbone.fpn"}, files=sent(cat_photo)
        )
    assert {"backbone", "backbone.fpn"} <= set(info["layers"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "method_not_applicable"
    assert "grad_cam need the gradient at the layer" in refused.json()["error"]["message"]
    assert "use eigen_cam" in refused.json()["error"]["message"]
    explanations = answer.json()["explanations"]
    assert [e["detection"] for e in explanations] == [0, 1]
    grid = boxes.layer_shapes["backbone"][-2:]
    for explanation in explanations:
        d = explanation["detection"]
        target = FasterRCNNBoxScoreTarget(labels=[found["labels"][d]], bounding_boxes=[found["boxes"][d]])
        with SignCorrectedEigenCAM(
            model=reference, target_layers=[reference.backbone], reshape_transform=fasterrcnn_reshape_transform
        ) as cam:
            theirs = cam(input_tensor=x, targets=[target])[0]
        ours = np.asarray(explanation["map"]["data"])
        theirs = theirs_where_ours_is(theirs, ours, grid)
        agreement = pearson(as_displayed(torch.tensor(ours), theirs.shape), theirs)
        print(f"detection eigen_cam at the FPN #{d}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD


async def test_a_wide_and_a_tall_image_share_a_batch_each_letterboxed(serve, boxes, reference, cat_photo):
    """Images of other aspect ratios in one batch: each is letterboxed (scaled to fit, not stretched), gets the
    detector's detections of its own letterboxed input with boxes mapped back to its own pixels, and maps whose
    rows and columns cover it, with the fraction of them it covers (the detector pads its resized input to a
    multiple of 32 too: read off its own transform here)."""
    photos = [cat_photo, cat_photo.rotate(90, expand=True)]
    params = {"method": "grad_cam", "score_threshold": 0.2, "top_k": 2}
    async with serve({"boxes": boxes}, max_batch_delay_ms=200) as client:
        answers = await asyncio.gather(*(client.post(URL, params=params, files=sent(photo)) for photo in photos))
        metrics = (await client.get("/metrics")).text
    batches = next(line for line in metrics.splitlines() if line.startswith("explain_batch_size_count"))
    assert float(batches.split()[-1]) == 1
    grid = boxes.layer_shapes[LAYER][-2:]
    for photo, answer in zip(photos, answers, strict=True):
        x = photo_tensor(photo)
        with torch.no_grad():
            output = reference(x)[0]
            internal = reference.transform(list(x))[0]
        kept = output["scores"] >= params["score_threshold"]
        content = content_size(photo)
        scale = np.array([photo.width / content[0], photo.height / content[1]] * 2)
        detections = answer.json()["detections"]
        assert len(detections) == int(kept.sum()) >= 1, photo.size
        np.testing.assert_allclose(
            [d["box"] for d in detections], output["boxes"][kept].numpy() * scale, rtol=1e-4, atol=1e-3
        )
        (height, width), padded = internal.image_sizes[0], internal.tensors.shape[-2:]
        covered = (
            grid[0] * content[1] / INPUT_SIZE[0] * height / padded[0],
            grid[1] * content[0] / INPUT_SIZE[1] * width / padded[1],
        )
        shape = [math.ceil(cells) for cells in covered]
        for explanation in answer.json()["explanations"]:
            assert explanation["map"]["shape"] == shape, photo.size
            np.testing.assert_allclose(explanation["map"]["image_extent"], np.divide(covered, shape), rtol=1e-6)


async def test_the_overlay_draws_the_detection_s_box(serve, boxes, cat_photo, expected):
    _, found = expected
    async with serve({"boxes": boxes}) as client:
        answer = (
            await client.post(
                URL,
                params={"score_threshold": SCORE_THRESHOLD, "detection": 0, "include": "overlay", "alpha": 0},
                files=sent(cat_photo),
            )
        ).json()
    (explanation,) = answer["explanations"]
    overlay = np.asarray(Explanation.model_validate(explanation).overlay_image().convert("RGB"))
    x0, y0, x1, y1 = (round(v) for v in answer["detections"][0]["box"])
    assert (overlay[(y0 + y1) // 2, x0] == 255).all()  # the box's outline, white on the photo (alpha 0)
    photo = np.asarray(cat_photo)
    inside = overlay[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4].astype(int) - photo[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4]
    assert np.abs(inside).max() <= 2  # and nothing else drawn


async def test_what_a_detection_model_cannot_serve_is_a_400(serve, boxes, cat_photo, expected, noise_png):
    _, found = expected
    count = len(found["scores"])
    async with serve({"boxes": boxes, "tiny": tiny_loaded()}) as client:
        for params, code, words in (
            ({"score_threshold": SCORE_THRESHOLD, "detection": count}, "invalid_parameter", f"{count} is out of range"),
            ({"score_threshold": 1, "detection": 0}, "invalid_parameter", "no detection with a score of at least 1"),
            ({"detection": "one"}, "invalid_parameter", "detection indices"),
            ({"class": "cat"}, "invalid_parameter", "name detections by their index"),
            ({"method": "guided_backprop"}, "method_not_applicable", "not a detection's box score"),
            ({"evaluate": "true"}, "invalid_parameter", "detection model"),
        ):
            refused = await client.post(URL, params=params, files=sent(cat_photo))
            assert refused.status_code == 400, params
            assert refused.json()["error"]["code"] == code and words in refused.json()["error"]["message"], params
        for path, params in (
            ("explain", {"detection": 0}),
            ("explain", {"score_threshold": 0.5}),
            ("predict", {"score_threshold": 0.5}),
        ):
            refused = await client.post(f"/v1/models/tiny/{path}", params=params, files={"image": noise_png})
            assert refused.status_code == 400 and "applies to detection models" in refused.json()["error"]["message"]
        assert (await client.get("/healthz")).status_code == 200


def test_a_detection_manifest_needs_its_class_count_and_no_normalisation(tmp_path):
    manifest = 'name = "boxes"\nsource = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"\nweights = "b.pth"\n'
    (tmp_path / "boxes.toml").write_text(manifest + 'task = "detection"\n')
    with pytest.raises(ModelLoadError, match="says num_classes"):
        ModelStore.discover(tmp_path)
    (tmp_path / "boxes.toml").write_text(manifest + 'task = "detection"\nnum_classes = 3\nmean = [0.4, 0.4, 0.4]\n')
    with pytest.raises(ModelLoadError, match="leave out mean and std"):
        ModelStore.discover(tmp_path)


async def test_a_detection_model_visualizes_channels_not_classes(serve, boxes):
    from tests.api.test_jobs import wait_until_finished

    async with serve({"boxes": boxes}) as client:
        url = "/v1/models/boxes/visualizations"
        refused = await client.post(url, json={"objective": {"kind": "class", "class": "cat"}, "steps": 2})
        accepted = await client.post(
            url, json={"objective": {"kind": "channel", "layer": LAYER, "channel": 3}, "steps": 2, "size": [64, 64]}
        )
        done = await wait_until_finished(client, accepted.headers["location"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "method_not_applicable"
    assert "boxes, not a logit per class" in refused.json()["error"]["message"]
    assert done["status"] == "succeeded" and done["result"]["top_classes"] == []


async def test_score_cam_scores_each_masked_image_s_box_as_pytorch_grad_cam(
    serve, boxes, reference, cat_photo, expected
):
    """A method with passes of its own: the detection's box score in each masked image's detections (at
    backbone.body.1, 16 channels)."""
    x, found = expected
    async with serve({"boxes": boxes}) as client:
        answer = (
            await client.post(
                URL,
                params={
                    "method": "score_cam",
                    "layer": "backbone.body.1",
                    "score_threshold": SCORE_THRESHOLD,
                    "detection": 0,
                },
                files=sent(cat_photo),
            )
        ).json()
    (explanation,) = answer["explanations"]
    target = FasterRCNNBoxScoreTarget(labels=[found["labels"][0]], bounding_boxes=[found["boxes"][0]])
    with ScoreCAM(model=reference, target_layers=[reference.get_submodule("backbone.body.1")]) as cam:
        theirs = cam(input_tensor=x, targets=[target])[0]
    ours = np.asarray(explanation["map"]["data"])
    theirs = theirs_where_ours_is(theirs, ours, boxes.layer_shapes["backbone.body.1"][-2:])
    assert pearson(as_displayed(torch.tensor(ours), theirs.shape), theirs) >= THRESHOLD


async def test_every_method_the_model_lists_answers_its_task(serve, boxes, cat_photo):
    """Each method that GET /v1/models/{model} lists runs on this task's targets, at a small layer with few
    samples and steps."""
    cheap = {
        "samples": 2,
        "steps": 2,
        "stride": 64,
        "window": 64,
        "layer": "backbone.body.4",
        **{"score_threshold": SCORE_THRESHOLD, "detection": 0},
    }
    async with serve({"boxes": boxes}) as client:
        methods = (await client.get("/v1/models/boxes")).json()["methods"]
        for method in methods:
            answer = await client.post(URL, params={"method": method, **cheap}, files=sent(cat_photo))
            assert answer.status_code == 200, (method, answer.text[:300])
            assert [e["method"] for e in answer.json()["explanations"]] == [method]


async def test_an_image_without_detections_is_explained_by_nothing_and_logs_no_error(serve, boxes, cat_photo, caplog):
    caplog.set_level(logging.ERROR)
    async with serve({"boxes": boxes}) as client:
        answer = await client.post(
            URL, params={"score_threshold": 1, "method": "grad_cam,score_cam"}, files=sent(cat_photo)
        )
    assert answer.status_code == 200 and answer.json()["detections"] == [] and answer.json()["explanations"] == []
    assert [r.getMessage() for r in caplog.records] == []
