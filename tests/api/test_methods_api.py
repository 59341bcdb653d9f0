"""Every method over HTTP with its parameters; map encodings, boxes, evaluation and the cost bound."""

import base64

import numpy as np
import pytest
from torch import nn

from service.methods import METHODS
from tests.tiny_models import TinyGapNet, tiny_loaded, tiny_vit_loaded

pytestmark = pytest.mark.anyio
URL = "/v1/models/tiny/explain"


@pytest.fixture
def models():
    return {"tiny": tiny_loaded()}


@pytest.fixture(scope="module")
def tiny_vit():
    return tiny_vit_loaded()


@pytest.mark.parametrize("method", list(METHODS))
async def test_every_method_is_reachable_with_its_parameters(serve, models, tiny_vit, noise_png, method):
    """On the tiny CNN, or, for the methods that read a transformer's attention, on a tiny ViT (the CNN refuses
    them with a 400 that names the reason)."""
    url, grid = URL, [8, 8]
    if METHODS[method].not_applicable_to(models["tiny"].module) is not None:
        url, grid = "/v1/models/tiny_vit/explain", [4, 4]
    params = {
        "method": method,
        "top_k": 2,
        "samples": 3,
        "steps": 4,
        "window": 8,
        "stride": 8,
        "fill": "black",
        "baseline": "mean",
        "nt_type": "vargrad",
    }
    async with serve({**models, "tiny_vit": tiny_vit}) as client:
        response = await client.post(url, params=params, files={"image": noise_png})
        if url != URL:
            refused = await client.post(URL, params=params, files={"image": noise_png})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "method_not_applicable"
            assert "vision transformer" in refused.json()["error"]["message"]
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert [e["method"] for e in explanations] == [method, method]
    shape = [32, 32] if METHODS[method].input_resolution else grid
    assert all(e["map"]["shape"] == shape and e["overlay_png"] for e in explanations)
    assert all(e["layer"] == ("features" if METHODS[method].uses_layer else None) for e in explanations)


async def test_base64_maps_are_the_same_floats_as_lists(serve, models, noise_png):
    async with serve(models) as client:
        as_list = await client.post(URL, params={"method": "saliency", "class": 1}, files={"image": noise_png})
        as_b64 = await client.post(
            URL, params={"method": "saliency", "class": 1, "map_encoding": "base64"}, files={"image": noise_png}
        )
    listed = as_list.json()["explanations"][0]["map"]
    encoded = as_b64.json()["explanations"][0]["map"]
    assert encoded["data"] is None and encoded["dtype"] == "float32" and encoded["shape"] == [32, 32]
    decoded = np.frombuffer(base64.b64decode(encoded["data_base64"]), dtype="<f4").reshape(encoded["shape"])
    np.testing.assert_array_equal(decoded, np.array(listed["data"], dtype=np.float32))


async def test_boxes_and_evaluation_are_added_on_request(serve, models, noise_png):
    async with serve(models) as client:
        plain = await client.post(URL, files={"image": noise_png})
        rich = await client.post(
            URL, params={"bbox": "true", "bbox_threshold": 0.3, "evaluate": "true"}, files={"image": noise_png}
        )
    assert plain.json()["explanations"][0]["bbox"] is None and plain.json()["explanations"][0]["evaluation"] is None
    explanation = rich.json()["explanations"][0]
    box = explanation["bbox"]
    assert 0 <= box["x0"] < box["x1"] <= 48 and 0 <= box["y0"] < box["y1"] <= 40  # the posted image is 48 x 40
    assert set(explanation["evaluation"]) == {"confidence_change", "deletion_auc", "insertion_auc"}


async def test_the_cost_bound_refuses_with_the_bound_and_the_cost(serve, models, noise_png):
    async with serve(models, max_request_cost=20, evaluation_steps=4) as client:
        cheap = await client.post(
            URL, params={"method": "cam,grad_cam,grad_cam_pp,saliency", "top_k": 3}, files={"image": noise_png}
        )
        assert cheap.status_code == 200
        for params, cost in (
            ({"method": "smoothgrad", "samples": 7, "top_k": 3}, 7 * 3 * 3),  # forward + backward: 3 each
            ({"method": "smoothgrad", "samples": 2, "top_k": 3}, 2 * 3 * 3),
            ({"method": "occlusion", "window": 4, "stride": 4}, 64),
            ({"method": "score_cam", "layer": "features"}, 8),
            ({"method": "grad_cam", "evaluate": "true", "top_k": 2}, 2 * 11),
            ({"method": "deeplift", "top_k": 3}, 2 * 3 * 3),  # input and reference: 2 images per class
            ({"method": "deeplift_shap", "samples": 4}, 2 * 4 * 3),
            ({"method": "kernel_shap", "samples": 30, "top_k": 3}, 30),  # forward only, shared by the classes
            ({"method": "feature_ablation", "window": 8}, 16),
            ({"method": "lrp", "top_k": 3}, 3 * 3),
        ):
            response = await client.post(URL, params=params, files={"image": noise_png})
            if cost <= 20:
                assert response.status_code == 200, (params, response.text)
                continue
            assert response.status_code == 400 and response.json()["error"]["code"] == "cost_exceeded"
            assert (
                f"costs {cost} forward-pass" in response.json()["error"]["message"]
                and "bound is 20" in response.json()["error"]["message"]
            )


@pytest.mark.parametrize(
    "params",
    [
        {"samples": 0},
        {"steps": 2000},
        {"fill": "red"},
        {"baseline": "noise"},
        {"nt_type": "mean"},
        {"map_encoding": "npy"},
        {"bbox_threshold": 2},
    ],
)
async def test_bad_method_parameters_are_400(serve, models, noise_png, params):
    async with serve(models) as client:
        response = await client.post(URL, params=params, files={"image": noise_png})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_parameter"


def test_every_method_s_defaults_at_the_built_in_model_s_default_layer_are_within_the_default_bound(builtin_model):
    """As docs/methods.md states: the bound admits every method's defaults, and the costliest default is 1280."""
    from api_schemas import ExplainParameters
    from service.core.settings import Settings
    from service.http.parameters import plan_explanation
    from service.methods import METHODS

    settings = Settings()
    costs = {}
    for name in METHODS:
        if METHODS[name].not_applicable_to(builtin_model.module) is not None:
            continue  # lrp: refused before any cost is counted
        plan = plan_explanation(
            ExplainParameters(method=name),
            builtin_model,
            settings.max_classes_per_request,
            settings.max_request_cost,
            settings.evaluation_steps,
            settings.overlay_max_side,
            settings.max_explanations_per_request,
        )
        costs[name] = plan.cost
    assert costs["score_cam"] == costs["ablation_cam"] == 1280
    assert max(costs.values()) == costs["ss_cam"] == costs["is_cam"] == 3 * 1280 <= settings.max_request_cost


class TinyReLU6Net(TinyGapNet):
    """The tiny network with ReLU6 rectifiers, as in MobileNets and the built-in EfficientNet-Lite0."""

    def __init__(self) -> None:
        super().__init__()
        self.stem[1] = nn.ReLU6()
        self.features[1] = nn.ReLU6()


class TinySiLUNet(TinyGapNet):
    """The tiny network with SiLU (swish) activations, as in EfficientNet-B0: no LRP rule covers them."""

    def __init__(self) -> None:
        super().__init__()
        self.stem[1] = nn.SiLU()
        self.features[1] = nn.SiLU()


async def test_lrp_is_refused_where_its_rules_do_not_apply_and_not_listed_for_that_model(serve, noise_png):
    models = {
        "tiny": tiny_loaded(),
        "relu6": tiny_loaded("relu6", TinyReLU6Net),
        "silu": tiny_loaded("silu", TinySiLUNet),
    }
    async with serve(models) as client:
        refused = await client.post("/v1/models/silu/explain", params={"method": "lrp"}, files={"image": noise_png})
        served = await client.post(URL, params={"method": "LRP"}, files={"image": noise_png})
        relu6 = await client.post(
            "/v1/models/relu6/explain",
            params={"method": "lrp", "composite": "epsilon_gamma_box", "canonize": "none"},
            files={"image": noise_png},
        )
        listed = {name: (await client.get(f"/v1/models/{name}")).json()["methods"] for name in models}
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "method_not_applicable"
    assert "SiLU" in refused.json()["error"]["message"]
    assert served.status_code == 200 and served.json()["explanations"][0]["method"] == "lrp"
    assert relu6.status_code == 200, relu6.text
    assert "lrp" in listed["tiny"] and "lrp" in listed["relu6"] and "lrp" not in listed["silu"]


async def test_lrp_without_canonizing_is_refused_on_a_residual_network(serve, builtin_model, noise_png):
    """The built-in model's inverted residual blocks add their input to their output: only `canonize=auto` gives
    that addition a rule."""
    async with serve({"builtin": builtin_model}) as client:
        plain = await client.post(
            "/v1/models/builtin/explain", params={"method": "lrp", "canonize": "none"}, files={"image": noise_png}
        )
        canonized = await client.post(
            "/v1/models/builtin/explain",
            params={"method": "lrp", "composite": "epsilon_plus_flat"},
            files={"image": noise_png},
        )
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "method_not_applicable"
    assert "canonize=none" in plain.json()["error"]["message"], plain.json()
    assert canonized.status_code == 200, canonized.text
