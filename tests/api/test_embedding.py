"""Embedding models over HTTP: the explanations target the cosine similarity of the image to a reference image.

A seeded torchvision ResNet-18 whose last layer projects to a 128-d embedding, saved to a weights file and served
from a store manifest that says `task = "embedding"`. Each map agrees with pytorch-grad-cam given the target of
its tutorial "Pixel Attribution for embeddings" (`SimilarityToConceptTarget`, defined there, not in the package),
with the reference image's embedding as the concept.
"""

import base64

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import ScoreCAM

from model_store import LoadedModel, ModelStore
from model_store.errors import ModelLoadError
from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import (
    CAM_REFERENCES,
    THRESHOLD,
    as_displayed,
    pearson,
    trainable_copy,
)
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
URL = "/v1/models/faces/explain"
LAYER_METHODS = ["grad_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "hires_cam", "eigen_cam"]


class SimilarityToConceptTarget:
    """pytorch-grad-cam's tutorials/Pixel Attribution for embeddings.ipynb."""

    def __init__(self, features):
        self.features = features

    def __call__(self, model_output):
        cos = torch.nn.CosineSimilarity(dim=0)
        return cos(model_output, self.features)


def write_store(directory) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=128).state_dict(), directory / "faces.pth")
    (directory / "faces.toml").write_text(
        'name = "faces"\nsource = "torchvision:resnet18"\nweights = "faces.pth"\ntask = "embedding"\n'
        'num_classes = 128\ndefault_layer = "layer4"\n'
    )


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    directory = tmp_path_factory.mktemp("embedding")
    write_store(directory)
    return ModelStore.discover(directory).load("faces", torch.device("cpu"))


@pytest.fixture(scope="module")
def pair(cat_photo):
    """The photo and a reference: the same photo mirrored and cropped (PNG, lossless)."""
    width, height = cat_photo.size
    reference = cat_photo.transpose(0).crop((width // 8, 0, width, height))
    return cat_photo, reference


def files(pair) -> dict[str, bytes]:
    return {"image": image_bytes(pair[0], "PNG"), "reference": image_bytes(pair[1], "PNG")}


async def test_maps_of_the_similarity_agree_with_pytorch_grad_cam(serve, faces, pair):
    async with serve({"faces": faces}) as client:
        info = (await client.get("/v1/models/faces")).json()
        answer = (await client.post(URL, params={"method": ",".join(LAYER_METHODS)}, files=files(pair))).json()
    assert info["task"] == "embedding"
    assert set(LAYER_METHODS) | {"saliency", "gradient_x_input"} <= set(info["methods"])
    assert {"score_cam", "occlusion", "integrated_gradients"} <= set(info["methods"])
    assert not {"cam", "guided_backprop"} & set(info["methods"])
    x, r = (faces.preprocessing.to_tensor(image)[None] for image in pair)
    with torch.no_grad():
        embedding, concept = faces.module(x)[0], faces.module(r)[0]
    similarity = float(torch.nn.functional.cosine_similarity(embedding, concept, dim=0))
    assert answer["task"] == "embedding" and answer["top_classes"] == []
    assert answer["similarity"] == pytest.approx(similarity, abs=1e-5)
    assert [e["method"] for e in answer["explanations"]] == LAYER_METHODS
    module = trainable_copy(faces)
    for explanation in answer["explanations"]:
        assert explanation["class"] is None
        method = explanation["method"]
        with CAM_REFERENCES[method](model=module, target_layers=[module.layer4]) as cam:
            theirs = cam(input_tensor=x, targets=[SimilarityToConceptTarget(concept)])[0]
        assert theirs.std() > 0
        ours = as_displayed(torch.tensor(explanation["map"]["data"]), x.shape[-2:])
        agreement = pearson(ours, theirs)
        print(f"embedding {method}: pearson {agreement:.5f}")
        assert agreement >= THRESHOLD, (method, agreement)


async def test_json_carries_the_reference_as_base64_and_predict_gives_the_embedding(serve, faces, pair):
    image, reference = (base64.b64encode(image_bytes(p, "PNG")).decode() for p in pair)
    async with serve({"faces": faces}) as client:
        as_json = (await client.post(URL, json={"image": image, "reference": reference, "method": "saliency"})).json()
        as_form = (await client.post(URL, params={"method": "saliency"}, files=files(pair))).json()
        predicted = (await client.post("/v1/models/faces/predict", files={"image": files(pair)["image"]})).json()
    assert as_json["similarity"] == as_form["similarity"]
    np.testing.assert_allclose(as_json["explanations"][0]["map"]["data"], as_form["explanations"][0]["map"]["data"])
    assert predicted["task"] == "embedding" and len(predicted["logits"]) == 128 and predicted["top_classes"] == []


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"class": 3}, "invalid_parameter", "'class' does not apply"),
        ({"top_k": 2}, "invalid_parameter", "'top_k' does not apply"),
        ({"evaluate": "true"}, "invalid_parameter", "'evaluate'"),
        ({"method": "guided_backprop"}, "method_not_applicable", "rectified backward pass, not a similarity"),
        ({"method": "cam"}, "method_not_applicable", "global-average-pool"),
    ],
)
async def test_what_an_embedding_model_cannot_explain_is_a_400(serve, faces, pair, params, code, words):
    async with serve({"faces": faces}) as client:
        refused = await client.post(URL, params=params, files=files(pair))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == code, refused.text
    assert words in refused.json()["error"]["message"]


async def test_a_missing_reference_and_a_reference_for_a_classifier_are_400s(serve, faces, pair, noise_png):
    async with serve({"faces": faces, "tiny": tiny_loaded()}) as client:
        missing = await client.post(URL, files={"image": files(pair)["image"]})
        extra = await client.post("/v1/models/tiny/explain", files={"image": noise_png, "reference": noise_png})
        broken = await client.post(URL, files={"image": files(pair)["image"], "reference": b"not an image"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_image"
    assert "'reference'" in missing.json()["error"]["message"]
    assert extra.status_code == 400 and "applies to embedding models" in extra.json()["error"]["message"]
    assert broken.status_code in (415, 422) and broken.json()["error"]["code"] in ("unsupported_image", "invalid_image")


async def test_score_cam_scores_the_similarity_of_each_masked_image_as_pytorch_grad_cam(serve, faces, pair):
    """A method with passes of its own: each masked image's similarity to the reference (at layer1, 64 channels)."""
    async with serve({"faces": faces}) as client:
        answer = (await client.post(URL, params={"method": "score_cam", "layer": "layer1"}, files=files(pair))).json()
    x, r = (faces.preprocessing.to_tensor(image)[None] for image in pair)
    module = trainable_copy(faces)
    with torch.no_grad():
        concept = module(r)[0]
    with ScoreCAM(model=module, target_layers=[module.layer1]) as cam:
        theirs = cam(input_tensor=x, targets=[SimilarityToConceptTarget(concept)])[0]
    ours = as_displayed(torch.tensor(answer["explanations"][0]["map"]["data"]), x.shape[-2:])
    assert pearson(ours, theirs) >= THRESHOLD


@pytest.fixture(scope="module")
def faces_with_concepts(faces, pair, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The same model with two stored concepts: the reference image's embedding, and a random vector."""
    directory = tmp_path_factory.mktemp("concepts")
    with torch.no_grad():
        mirrored = faces.module(faces.preprocessing.to_tensor(pair[1])[None])[0]
    torch.save(faces.module.state_dict(), directory / "faces.pth")
    torch.save({"mirrored_cat": mirrored, "noise": torch.randn(128)}, directory / "concepts.pt")
    (directory / "faces.toml").write_text(
        'name = "faces"\nsource = "torchvision:resnet18"\nweights = "faces.pth"\ntask = "embedding"\n'
        'num_classes = 128\ndefault_layer = "layer4"\nconcepts = "concepts.pt"\n'
    )
    return ModelStore.discover(directory).load("faces", torch.device("cpu"))


async def test_a_stored_concept_is_explained_as_the_reference_it_was_made_from(faces_with_concepts, serve, pair):
    image = {"image": files(pair)["image"]}
    async with serve({"faces": faces_with_concepts}) as client:
        info = (await client.get("/v1/models/faces")).json()
        by_image = (await client.post(URL, params={"method": "grad_cam,score_cam"}, files=files(pair))).json()
        by_concept = (
            await client.post(URL, params={"method": "grad_cam,score_cam", "concept": "mirrored_cat"}, files=image)
        ).json()
    assert info["concepts"] == ["mirrored_cat", "noise"]
    assert by_concept["similarity"] == pytest.approx(by_image["similarity"], abs=1e-5)
    for ours, theirs in zip(by_concept["explanations"], by_image["explanations"], strict=True):
        np.testing.assert_allclose(ours["map"]["data"], theirs["map"]["data"], rtol=1e-4, atol=1e-6)


async def test_a_concept_must_be_known_alone_and_for_an_embedding_model(faces_with_concepts, serve, pair, noise_png):
    image = {"image": files(pair)["image"]}
    async with serve({"faces": faces_with_concepts, "tiny": tiny_loaded()}) as client:
        unknown = await client.post(URL, params={"concept": "dog"}, files=image)
        both = await client.post(URL, params={"concept": "noise"}, files=files(pair))
        classifier = await client.post(
            "/v1/models/tiny/explain", params={"concept": "noise"}, files={"image": noise_png}
        )
        neither = await client.post(URL, files=image)
    assert unknown.status_code == 400 and "its concepts are ['mirrored_cat', 'noise']" in unknown.text
    assert both.status_code == 400 and "not both" in both.text
    assert classifier.status_code == 400 and "'concept' applies to embedding models" in classifier.text
    assert neither.status_code == 400 and neither.json()["error"]["code"] == "missing_image"


def test_a_concept_of_the_wrong_size_or_for_another_task_is_refused_at_load(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=16).state_dict(), tmp_path / "faces.pth")
    torch.save({"short": torch.zeros(15)}, tmp_path / "concepts.pt")
    manifest = 'name = "faces"\nsource = "torchvision:resnet18"\nweights = "faces.pth"\nnum_classes = 16\n'
    (tmp_path / "faces.toml").write_text(manifest + 'task = "embedding"\nconcepts = "concepts.pt"\n')
    with pytest.raises(ModelLoadError, match=r"concept 'short' .* is \(15,\); each concept .* \(16,\)"):
        ModelStore.discover(tmp_path).load("faces", torch.device("cpu"))
    (tmp_path / "faces.toml").write_text(manifest + 'concepts = "concepts.pt"\n')
    with pytest.raises(ModelLoadError, match="goes with task"):
        ModelStore.discover(tmp_path)
