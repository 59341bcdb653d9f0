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

from tests.conftest import image_bytes
from tests.service.methods.test_reference_agreement import seeded_resnet18  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio
REFERENCES = {
    "sparseness": lambda: quantus.Sparseness(disable_warnings=True),
    "complexity": lambda: quantus.Complexity(disable_warnings=True),
    "effective_complexity": lambda: quantus.EffectiveComplexity(disable_warnings=True),
}
METHODS = "grad_cam,eigen_cam,saliency"


@pytest.mark.parametrize("model_fixture", ["builtin_model", "seeded_resnet18"])
async def test_every_metric_equals_quantus_s(serve, request, model_fixture, cat_photo):
    model = request.getfixturevalue(model_fixture)
    async with serve({"m": model}) as client:
        answer = await client.post(
            "/v1/models/m/explain",
            params={"method": METHODS, "top_k": 2, "metrics": ",".join(REFERENCES), "include": "map"},
            files={"image": image_bytes(cat_photo, "PNG")},
        )
    assert answer.status_code == 200, answer.text
    x = model.preprocessing.to_tensor(cat_photo)[None].numpy()
    explanations = answer.json()["explanations"]
    assert len(explanations) == 6
    for explanation in explanations:
        raw = torch.tensor(explanation["map"]["data"])[None, None]
        a = F.interpolate(raw, size=x.shape[-2:], mode="bilinear", align_corners=False).numpy().astype(np.float64)
        y = np.array([explanation["class"]["index"]])
        for name, reference in REFERENCES.items():
            theirs = reference()(model=model.module, x_batch=x, y_batch=y, a_batch=a.copy())[0]
            ours = explanation["metrics"][name]
            assert ours["parameters"] == {
                "abs": True,
                "normalise": True,
                **({"eps": 1e-5} if "effective" in name else {}),
            }
            print(f"{model_fixture} {explanation['method']} {name}: ours {ours['value']:.6f} quantus {theirs:.6f}")
            assert ours["value"] == pytest.approx(float(theirs), rel=1e-4), (explanation["method"], name)


async def test_metrics_are_listed_and_an_unknown_one_is_a_400(serve, builtin_model, cat_jpeg):
    async with serve({"m": builtin_model}) as client:
        listed = (await client.get("/v1/metrics")).json()["metrics"]
        refused = await client.post(
            "/v1/models/m/explain", params={"metrics": "faithfulness"}, files={"image": cat_jpeg}
        )
        plain = (await client.post("/v1/models/m/explain", files={"image": cat_jpeg})).json()
    assert [m["name"] for m in listed] == list(REFERENCES)
    assert {m["better"] for m in listed} == {"higher", "lower"} and all(m["paper"] for m in listed)
    assert refused.status_code == 400 and "unknown metric 'faithfulness'" in refused.json()["error"]["message"]
    assert plain["explanations"][0]["metrics"] is None


def test_each_metric_equals_quantus_s_on_a_sparse_signed_attribution(builtin_model):
    """Where the maps above are dense (every upsampled value above eps), a signed attribution with zeros."""
    from service.metrics import METRICS

    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 1, 224, 224)) * (rng.random((1, 1, 224, 224)) < 0.3)
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    for name, reference in REFERENCES.items():
        theirs = reference()(model=builtin_model.module, x_batch=x, y_batch=np.array([0]), a_batch=a.copy())[0]
        metric = METRICS[name]
        assert metric.score(a[0, 0], metric.parameters) == pytest.approx(float(theirs), rel=1e-9), name
    assert METRICS["effective_complexity"].score(a[0, 0], METRICS["effective_complexity"].parameters) < 0.35 * a.size
