"""POST /v1/models/{model}/explain and /predict, in-process, with the built-in model and tiny seeded ones."""

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_bytes
from tests.tiny_models import TinyFlatNet, tiny_loaded

pytestmark = pytest.mark.anyio
EXPLAIN = "/v1/models/efficientnet_lite0/explain"
CAT_CLASSES = set(range(281, 286))


@pytest.fixture
def models(builtin_model):
    return {"efficientnet_lite0": builtin_model, "flat": tiny_loaded("flat", TinyFlatNet)}


def png_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64)), formats=["PNG"]).size


async def test_a_cat_photo_posted_as_multipart_is_explained(serve, models, cat_jpeg, cat_photo):
    async with serve(models) as client:
        response = await client.post(EXPLAIN, files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "efficientnet_lite0" and body["input_size"] == [224, 224]
    assert body["top_classes"][0]["index"] in CAT_CLASSES and len(body["top_classes"]) == 5
    assert len(body["logits"]) == 1000
    (explanation,) = body["explanations"]
    assert explanation["method"] == "grad_cam" and explanation["layer"] == "bn2"
    assert explanation["class"]["index"] == body["top_classes"][0]["index"]
    assert explanation["map"]["shape"] == [7, 7] and len(explanation["map"]["data"]) == 7
    assert png_size(explanation["overlay_png"]) == cat_photo.size  # 451 x 300: whole image, own aspect ratio
    assert set(body["timings_ms"]) >= {"decode", "queue", "inference", "encode", "total"}


async def test_overlays_in_each_format_and_size_and_the_time_of_each_stage(serve, models, cat_jpeg, cat_photo):
    async with serve(models) as client:
        answers = {
            image_format: await client.post(
                EXPLAIN, params={"overlay_format": image_format, "overlay_max_side": 200}, files={"image": cat_jpeg}
            )
            for image_format in ("png", "jpeg", "webp")
        }
        too_large = await client.post(EXPLAIN, params={"overlay_max_side": 513}, files={"image": cat_jpeg})
    sizes = {}
    for image_format, response in answers.items():
        (explanation,) = response.json()["explanations"]
        others = {"png", "jpeg", "webp"} - {image_format}
        assert all(explanation[f"overlay_{other}"] is None for other in others)
        data = base64.b64decode(explanation[f"overlay_{image_format}"])
        picture = Image.open(io.BytesIO(data), formats=[image_format.upper()])
        assert picture.size == (200, 133)  # the cat's 451 x 300, long side 200
        sizes[image_format] = len(data)
        stages = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
        assert list(stages) == ["decode", "queue", "inference", "encode", "serialise", "total"]
        assert float(stages["total"]) >= sum(float(stages[s]) for s in ("decode", "inference", "encode"))
    assert sizes["jpeg"] < sizes["png"] and sizes["webp"] < sizes["png"]
    assert too_large.status_code == 400 and "at most 512" in too_large.json()["error"]["message"]


async def test_the_service_answers_the_exact_bits_of_the_model_and_methods_for_the_decoded_input(
    serve, models, builtin_model, cat_jpeg
):
    """Decoding, batching on the worker thread and serialising change no bit of the logits or the maps that the
    model and the methods compute for the same input tensor on this thread."""
    import torch

    from service.engine.explainer import run_batch
    from service.engine.work import ExplainJob
    from service.imaging.decoding import decode_image
    from service.methods import METHODS

    methods = ("cam", "grad_cam", "saliency")
    async with serve(models) as client:
        response = await client.post(
            EXPLAIN, params={"method": ",".join(methods), "map_encoding": "base64"}, files={"image": cat_jpeg}
        )
    body = response.json()
    x = decode_image(cat_jpeg, builtin_model.preprocessing, 10**8, 512).tensor
    with torch.inference_mode():
        logits = builtin_model.module(x[None])[0]
    assert np.array_equal(np.array(body["logits"], dtype=np.float32), logits.numpy())
    job = ExplainJob(x, tuple(METHODS[m] for m in methods), None, 1, "bn2", float("inf"), "pin")
    (result,) = run_batch(builtin_model, [job])
    for ours, theirs in zip(body["explanations"], result.maps, strict=True):
        data = np.frombuffer(base64.b64decode(ours["map"]["data_base64"]), dtype="<f4").reshape(ours["map"]["shape"])
        assert np.array_equal(data, theirs.map.numpy()), ours["method"]


async def test_json_raw_and_multipart_bodies_give_the_same_answer(serve, models, cat_jpeg):
    params = {"method": ["cam", "grad_cam_pp"], "class": [281, "tiger cat"]}
    async with serve(models) as client:
        as_form = await client.post(EXPLAIN, files={"image": cat_jpeg}, data=params)
        as_json = await client.post(EXPLAIN, json={"image": base64.b64encode(cat_jpeg).decode(), **params})
        as_raw = await client.post(EXPLAIN, params=params, content=cat_jpeg, headers={"content-type": "image/jpeg"})
    answers = [r.json()["explanations"] for r in (as_form, as_json, as_raw)]
    keys = [[(e["method"], e["class"]["index"]) for e in a] for a in answers]
    assert keys[0] == [("cam", 281), ("cam", 282), ("grad_cam_pp", 281), ("grad_cam_pp", 282)]
    assert keys[0] == keys[1] == keys[2]
    assert answers[0][0]["map"] == answers[1][0]["map"] == answers[2][0]["map"]


async def test_top_k_and_include_and_aliases(serve, models, cat_jpeg):
    async with serve(models) as client:
        response = await client.post(
            EXPLAIN, params={"method": "GradCAM++,CAM", "top_k": 3, "include": "map"}, files={"image": cat_jpeg}
        )
    body = response.json()
    top3 = [c["index"] for c in body["top_classes"][:3]]
    assert [(e["method"], e["class"]["index"]) for e in body["explanations"]] == [("grad_cam_pp", c) for c in top3] + [
        ("cam", c) for c in top3
    ]
    assert body["logits"] is None and all(e["overlay_png"] is None for e in body["explanations"])


async def test_labels_are_case_insensitive_and_layers_can_be_chosen(serve, models, cat_jpeg):
    async with serve(models) as client:
        response = await client.post(
            EXPLAIN, params={"class": "EGYPTIAN CAT", "layer": "blocks.5"}, files={"image": cat_jpeg}
        )
    (explanation,) = response.json()["explanations"]
    assert explanation["class"] == {"index": 285, "label": "Egyptian cat"}
    assert explanation["layer"] == "blocks.5" and explanation["map"]["shape"] == [7, 7]


async def test_predict_answers_logits_and_top_classes(serve, models, cat_jpeg):
    async with serve(models) as client:
        response = await client.post("/v1/models/efficientnet_lite0/predict", files={"image": cat_jpeg})
    body = response.json()
    assert response.status_code == 200 and len(body["logits"]) == 1000
    assert body["top_classes"][0]["index"] in CAT_CLASSES
    assert abs(sum(c["probability"] for c in body["top_classes"]) - 1) < 0.2


async def test_a_blank_image_gives_finite_maps(serve, models):
    blank = image_bytes(Image.new("RGB", (64, 64), (0, 0, 0)), "PNG")
    async with serve(models) as client:
        response = await client.post(
            EXPLAIN, params={"method": ["cam", "grad_cam", "grad_cam_pp"], "class": 0}, files={"image": blank}
        )
    assert response.status_code == 200
    for explanation in response.json()["explanations"]:
        values = [v for row in explanation["map"]["data"] for v in row]
        assert all(isinstance(v, float) for v in values)


async def test_rgba_and_16_bit_images_are_accepted(serve, models):
    rgba = image_bytes(Image.new("RGBA", (50, 40), (10, 20, 30, 0)), "PNG")
    sixteen = image_bytes(Image.new("I;16", (30, 30), 60000), "PNG")
    async with serve(models) as client:
        for data in (rgba, sixteen):
            response = await client.post(EXPLAIN, files={"image": data})
            assert response.status_code == 200, response.text


async def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(serve, models, cat_jpeg, noise_png):
    async with serve(models, max_batch_delay_ms=50) as client:
        requests = [
            client.post(EXPLAIN, params={"class": c}, files={"image": cat_jpeg if c % 2 else noise_png})
            for c in range(8)
        ]
        responses = await asyncio.gather(*requests)
        metrics = (await client.get("/metrics")).text
    assert [r.json()["explanations"][0]["class"]["index"] for r in responses] == list(range(8))
    count = next(line for line in metrics.splitlines() if line.startswith("explain_batch_size_count"))
    assert float(count.split()[-1]) < 8  # fewer batches than requests
    # a request's answer does not depend on its companions
    async with serve(models) as client:
        alone = await client.post(EXPLAIN, params={"class": 3}, files={"image": cat_jpeg})
    batched_map = np.array(responses[3].json()["explanations"][0]["map"]["data"])
    np.testing.assert_allclose(np.array(alone.json()["explanations"][0]["map"]["data"]), batched_map, atol=1e-4)
