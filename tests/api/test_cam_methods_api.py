"""The pytorch-grad-cam and torch-cam methods over HTTP on the built-in model: their parameters, their cost and
their entries in GET /v1/methods."""

import base64

import numpy as np
import pytest

pytestmark = pytest.mark.anyio
URL = "/v1/models/efficientnet_lite0/explain"


def raw_map(explanation: dict) -> np.ndarray:
    shape = explanation["map"]["shape"]
    return np.frombuffer(base64.b64decode(explanation["map"]["data_base64"]), dtype="<f4").reshape(shape)


async def test_eigen_smooth_is_a_request_parameter_of_the_layer_methods(serve, builtin_model, cat_jpeg):
    async with serve({"efficientnet_lite0": builtin_model}) as client:
        answers = [
            await client.post(
                URL,
                params={"method": "grad_cam,layer_cam", "class": "281", "map_encoding": "base64", **extra},
                files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")},
            )
            for extra in ({}, {"eigen_smooth": "true"})
        ]
        methods = {m["name"]: m for m in (await client.get("/v1/methods")).json()["methods"]}
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    for plain, smooth in zip(answers[0].json()["explanations"], answers[1].json()["explanations"], strict=True):
        assert smooth["map"]["shape"] == [7, 7]
        assert not np.allclose(raw_map(plain), raw_map(smooth))
    assert "eigen_smooth" in methods["grad_cam"]["parameters"]
    assert methods["ss_cam"]["parameters"] == ["layer", "samples", "sigma", "seed"]
    assert methods["fullgrad"]["input_resolution"] and "layer" not in methods["fullgrad"]["parameters"]
    assert methods["random_cam"]["sanity_check"] is False and methods["shapley_cam"]["sanity_check"] is True


async def test_aug_smooth_averages_six_augmented_passes_counted_by_the_cost_bound(serve, builtin_model, cat_jpeg):
    """Six passes, each forward and backward, per class: 2 classes cost 2 x 6 x 3 = 36."""
    image = {"image": ("cat.jpg", cat_jpeg, "image/jpeg")}
    params = {"method": "grad_cam", "top_k": "2", "map_encoding": "base64"}
    async with serve({"efficientnet_lite0": builtin_model}, max_request_cost=35) as client:
        plain = await client.post(URL, params=params, files=image)
        refused = await client.post(URL, params={**params, "aug_smooth": "true"}, files=image)
    async with serve({"efficientnet_lite0": builtin_model}, max_request_cost=36) as client:
        smooth = await client.post(URL, params={**params, "aug_smooth": "true"}, files=image)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "cost_exceeded"
    assert "costs 36 " in refused.json()["error"]["message"]
    assert [plain.status_code, smooth.status_code] == [200, 200], smooth.text
    for before, after in zip(plain.json()["explanations"], smooth.json()["explanations"], strict=True):
        assert after["map"]["shape"] == [7, 7]
        assert not np.allclose(raw_map(before), raw_map(after))
        assert 0 <= raw_map(after).min() and raw_map(after).max() <= 1  # a mean of maps scaled to [0, 1]


async def test_score_cam_variants_cost_a_pass_per_channel_and_sample(serve, builtin_model, cat_jpeg):
    """torch-cam's default of 35 SS-CAM samples is 35 x 1280 passes at the built-in model's default layer."""
    async with serve({"efficientnet_lite0": builtin_model}) as client:
        refused = await client.post(
            URL, params={"method": "ss_cam", "samples": "35"}, files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")}
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "cost_exceeded"
    assert "44800" in refused.json()["error"]["message"]
