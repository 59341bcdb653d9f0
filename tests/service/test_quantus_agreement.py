"""Quantus's metrics over HTTP equal Quantus 0.6.0's own on the same model, input and explanation.

The service scores the map it answers, upsampled to the model's input (bilinear, half-pixel centres); the
reference gets that same attribution, computed here with torch, as `a_batch`, one explanation per call (Quantus
normalises a batch by the batch's largest value).
"""

import numpy as np
import pytest
import quantus
import torch
import torch.nn.functional as F

from service.metrics import METRICS
from service.metrics.attribution import attribution
from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import seeded_resnet18  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio
REFERENCES = {
    "sparseness": lambda: quantus.Sparseness(disable_warnings=True),
    "complexity": lambda: quantus.Complexity(disable_warnings=True),
    "effective_complexity": lambda: quantus.EffectiveComplexity(disable_warnings=True),
    "pointing_game": lambda: quantus.PointingGame(disable_warnings=True),
    "attribution_localisation": lambda: quantus.AttributionLocalisation(disable_warnings=True),
    "top_k_intersection": lambda: quantus.TopKIntersection(disable_warnings=True),
    "relevance_rank_accuracy": lambda: quantus.RelevanceRankAccuracy(disable_warnings=True),
    "relevance_mass_accuracy": lambda: quantus.RelevanceMassAccuracy(disable_warnings=True),
    "auc": lambda: quantus.AUC(disable_warnings=True),
}
METHODS = "grad_cam,eigen_cam,saliency"
BOX = (120, 20, 330, 260)  # the cat's head in the photo (451 x 300)


def box_mask(image_size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The box over the attribution's pixels: those whose centres lie inside it."""
    height, width = shape
    x0, y0, x1, y1 = BOX
    mask = np.zeros(shape)
    for row in range(height):
        for column in range(width):
            x, y = (column + 0.5) * image_size[0] / width, (row + 0.5) * image_size[1] / height
            mask[row, column] = x0 <= x < x1 and y0 <= y < y1
    return mask


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_every_metric_equals_quantus_s(serve, request, model_fixture, cat_photo):
    model = request.getfixturevalue(model_fixture)
    async with serve({"m": model}) as client:
        answer = await client.post(
            "/v1/models/m/explain",
            params={
                "method": METHODS,
                "top_k": 2,
                "metrics": ",".join(REFERENCES),
                "target_box": ",".join(map(str, BOX)),
                "include": "map",
            },
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    s = box_mask(cat_photo.size, x.shape[-2:])[None, None]
    explanations = answer.json()["explanations"]
    assert len(explanations) == 6
    for explanation in explanations:
        raw = np.asarray(explanation["map"]["data"], dtype=np.float32)
        # The attribution the service scored (its own upsampling, so that ranks tie alike), checked against torch's.
        a = attribution(raw, (x.shape[-1], x.shape[-2]))[None, None]
        upsampled = F.interpolate(torch.tensor(raw)[None, None], size=x.shape[-2:], mode="bilinear")
        np.testing.assert_allclose(a, upsampled.double().numpy(), rtol=1e-4, atol=1e-6 * np.abs(raw).max())
        y = np.array([explanation["class"]["index"]])
        for name, reference in REFERENCES.items():
            theirs = reference()(model=model.module, x_batch=x, y_batch=y, a_batch=a.copy(), s_batch=s.copy())[0]
            ours = explanation["metrics"][name]
            assert ours["parameters"] == METRICS[name].parameters
            print(
                f"{model_fixture} {explanation['method']} {name}: ours {ours['value']:.6f} quantus {float(theirs):.6f}"
            )
            assert ours["value"] == pytest.approx(float(theirs), rel=1e-4), (explanation["method"], name)


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_faithfulness_correlation_equals_quantus_s_given_the_same_draws(serve, request, model_fixture, cat_photo):
    """Quantus draws its random subsets from numpy's global generator: seeded with the service's seed (0), it
    draws the same subsets."""
    model = request.getfixturevalue(model_fixture)
    async with serve({"m": model}) as client:
        answer = await client.post(
            "/v1/models/m/explain",
            params={"method": "grad_cam,saliency", "metrics": "faithfulness_correlation", "include": "map"},
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    for explanation in answer.json()["explanations"]:
        raw = torch.tensor(explanation["map"]["data"], dtype=torch.float32)[None, None]
        a = F.interpolate(raw, size=x.shape[-2:], mode="bilinear").numpy()
        ours = explanation["metrics"]["faithfulness_correlation"]
        np.random.seed(ours["parameters"]["seed"])
        theirs = quantus.FaithfulnessCorrelation(disable_warnings=True)(
            model=model.module, x_batch=x, y_batch=np.array([explanation["class"]["index"]]), a_batch=a, device="cpu"
        )[0]
        print(f"{model_fixture} {explanation['method']}: ours {ours['value']:.6f} quantus {float(theirs):.6f}")
        assert ours["value"] == pytest.approx(float(theirs), abs=1e-4), explanation["method"]


PATCH_REFERENCES = {
    "region_perturbation": lambda: quantus.RegionPerturbation(disable_warnings=True),
    "selectivity": lambda: quantus.Selectivity(disable_warnings=True),
}


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_the_patch_perturbation_metrics_equal_quantus_s(serve, request, model_fixture, cat_photo):
    """Region perturbation (100 patches of 8 px, most relevant first) and selectivity (all 784 of them): the
    patches in Quantus's order, ties (the zeros of a rectified map) included, and the area under each curve.
    Quantus's own `get_auc_score` calls `np.trapz`, which numpy 2.4 removed: the reference's area is taken here
    from the curve Quantus returns, as `get_auc_score` takes it (trapezoids of width 1)."""
    model = request.getfixturevalue(model_fixture)
    async with serve({"m": model}, request_timeout_s=600) as client:  # about 1,800 passes on two cores
        answer = await client.post(
            "/v1/models/m/explain",
            params={"method": "grad_cam,saliency", "metrics": ",".join(PATCH_REFERENCES), "include": "map"},
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    for explanation in answer.json()["explanations"]:
        raw = torch.tensor(explanation["map"]["data"], dtype=torch.float32)[None, None]
        a = F.interpolate(raw, size=x.shape[-2:], mode="bilinear").numpy()
        for name, reference in PATCH_REFERENCES.items():
            (curve,) = reference()(
                model=model.module, x_batch=x, y_batch=np.array([explanation["class"]["index"]]), a_batch=a.copy()
            )
            theirs, ours = np.trapezoid(np.array(curve), dx=1), explanation["metrics"][name]["value"]
            print(f"{model_fixture} {explanation['method']} {name}: ours {ours:.6f} quantus {float(theirs):.6f}")
            assert ours == pytest.approx(float(theirs), rel=1e-4, abs=1e-4), (explanation["method"], name)


FEATURE_REFERENCES = {
    "pixel_flipping": lambda step: quantus.PixelFlipping(features_in_step=step, disable_warnings=True),
    "faithfulness_estimate": lambda step: quantus.FaithfulnessEstimate(features_in_step=step, disable_warnings=True),
}


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_the_feature_perturbation_metrics_equal_quantus_s_at_the_requested_step(
    serve, request, model_fixture, cat_photo
):
    """Pixel flipping and faithfulness estimate at `features_in_step=3136` (48 steps at 224 px; Quantus's default,
    1, is a pass per input value): the values in Quantus's order (`np.argsort` of the negated float32
    attribution, the channels of one pixel tied), each step's perturbation, and the area under pixel flipping's
    curve (taken here from the curve, as for the patch metrics) or the estimate's correlation."""
    model = request.getfixturevalue(model_fixture)
    step = 3136
    async with serve({"m": model}) as client:
        answer = await client.post(
            "/v1/models/m/explain",
            params={
                "method": "grad_cam,saliency",
                "metrics": ",".join(FEATURE_REFERENCES),
                "features_in_step": step,
                "include": "map",
            },
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    for explanation in answer.json()["explanations"]:
        raw = torch.tensor(explanation["map"]["data"], dtype=torch.float32)[None, None]
        a = F.interpolate(raw, size=x.shape[-2:], mode="bilinear").numpy()
        for name, reference in FEATURE_REFERENCES.items():
            (result,) = reference(step)(
                model=model.module, x_batch=x, y_batch=np.array([explanation["class"]["index"]]), a_batch=a.copy()
            )
            theirs = np.trapezoid(np.array(result), dx=1) if name == "pixel_flipping" else result
            ours = explanation["metrics"][name]
            print(
                f"{model_fixture} {explanation['method']} {name}: ours {ours['value']:.6f} quantus {float(theirs):.6f}"
            )
            assert ours["parameters"]["features_in_step"] == step
            assert ours["value"] == pytest.approx(float(theirs), rel=1e-4, abs=1e-4), (explanation["method"], name)


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_monotonicity_correlation_equals_quantus_s_given_the_same_draws(serve, request, model_fixture, cat_photo):
    """12 steps of 12,544 values, least relevant first, each set 10 times to a uniform draw: the draws are those
    of `np.random.seed(seed)` before Quantus's call, one per perturbation."""
    model = request.getfixturevalue(model_fixture)
    step, samples = 12544, 10
    async with serve({"m": model}) as client:
        answer = await client.post(
            "/v1/models/m/explain",
            params={
                "method": "grad_cam,saliency",
                "metrics": "monotonicity_correlation",
                "features_in_step": step,
                "nr_samples": samples,
                "include": "map",
            },
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    for explanation in answer.json()["explanations"]:
        raw = torch.tensor(explanation["map"]["data"], dtype=torch.float32)[None, None]
        a = F.interpolate(raw, size=x.shape[-2:], mode="bilinear").numpy()
        ours = explanation["metrics"]["monotonicity_correlation"]
        np.random.seed(ours["parameters"]["seed"])
        (theirs,) = quantus.MonotonicityCorrelation(features_in_step=step, nr_samples=samples, disable_warnings=True)(
            model=model.module, x_batch=x, y_batch=np.array([explanation["class"]["index"]]), a_batch=a.copy()
        )
        print(f"{model_fixture} {explanation['method']}: ours {ours['value']:.6f} quantus {float(theirs):.6f}")
        assert (ours["parameters"]["features_in_step"], ours["parameters"]["nr_samples"]) == (step, samples)
        assert ours["value"] == pytest.approx(float(theirs), abs=1e-6), explanation["method"]


async def test_metrics_are_listed_and_what_they_cannot_score_is_a_400(serve, builtin_model, cat_jpeg):
    refusals = (
        ({"metrics": "faithfulness"}, "unknown metric 'faithfulness'"),
        ({"metrics": "auc"}, "give target_box=x0,y0,x1,y1"),
        ({"metrics": "sparseness", "target_box": "1,2,3,4"}, "'target_box' is for the localisation metrics"),
        ({"metrics": "auc", "target_box": "1,2,3"}, "target_box: String should match pattern"),
        ({"metrics": "auc", "target_box": "5,2,3,4"}, "x0 < x1"),
        (  # 5 methods x 10 classes x 100 passes
            {"metrics": "faithfulness_correlation", "method": METHODS + ",xgrad_cam,layer_cam", "top_k": 10},
            "forward-pass equivalents",
        ),
        ({"metrics": "pixel_flipping"}, "forward-pass equivalents"),  # a pass per input value: 150,528
        ({"metrics": "sparseness", "features_in_step": 8}, "'features_in_step' is a parameter of the metrics"),
        ({"metrics": "pixel_flipping", "features_in_step": 1000}, "features_in_step must divide"),
        ({"metrics": "selectivity", "patch_size": 300}, "patch_size is at most the input's side, 224"),
        ({"metrics": "sparseness", "nr_samples": 5}, "'nr_samples' is a parameter of the metrics"),
    )
    async with serve({"m": builtin_model}) as client:
        listed = (await client.get("/v1/metrics")).json()["metrics"]
        answers = [
            await client.post("/v1/models/m/explain", params=params, files={"image": cat_jpeg})
            for params, _ in refusals
        ]
        plain = (await client.post("/v1/models/m/explain", files={"image": cat_jpeg})).json()
        seeded = await client.post(  # smoothgrad's seed is the method's, not the metric's
            "/v1/models/m/explain",
            params={
                "method": "smoothgrad",
                "samples": 1,
                "seed": 7,
                "metrics": "faithfulness_correlation",
                "nr_runs": 2,
            },
            files={"image": cat_jpeg},
        )
        outside = await client.post(
            "/v1/models/m/explain",
            params={"metrics": "auc", "target_box": "9000,9000,9001,9001"},
            files={"image": cat_jpeg},
        )
    assert [m["name"] for m in listed] == [
        *REFERENCES,
        "faithfulness_correlation",
        *PATCH_REFERENCES,
        *FEATURE_REFERENCES,
        "monotonicity_correlation",
    ]
    assert {m["better"] for m in listed} == {"higher", "lower"} and all(m["paper"] for m in listed)
    for (params, words), answer in zip(refusals, answers, strict=True):
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], params
    assert plain["explanations"][0]["metrics"] is None
    used = seeded.json()["explanations"][0]["metrics"]["faithfulness_correlation"]["parameters"]
    assert (used["seed"], used["nr_runs"]) == (0, 2)
    # No pixel of the image in the box: undefined, as Quantus's nan.
    assert outside.json()["explanations"][0]["metrics"]["auc"]["value"] is None


def test_each_metric_equals_quantus_s_on_a_sparse_signed_attribution(builtin_model):
    """Where the maps above are dense (every upsampled value above eps) and all positive: a signed attribution
    with zeros, and a scattered region."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 1, 224, 224)) * (rng.random((1, 1, 224, 224)) < 0.3)
    region = rng.random((1, 1, 224, 224)) < 0.2
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    for name, reference in REFERENCES.items():
        theirs = reference()(
            model=builtin_model.module, x_batch=x, y_batch=np.array([0]), a_batch=a.copy(), s_batch=region.astype(float)
        )[0]
        metric = METRICS[name]
        assert metric.score(a[0, 0], region[0, 0], metric.parameters) == pytest.approx(float(theirs), rel=1e-9), name
    assert (
        METRICS["effective_complexity"].score(a[0, 0], None, METRICS["effective_complexity"].parameters) < 0.35 * a.size
    )
