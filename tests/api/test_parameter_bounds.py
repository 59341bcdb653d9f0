"""Every numeric parameter of every method at its bounds and one past them: an answer or a 4xx, never a 5xx.

The bounds are read from the schema (`api_schemas.ExplainParameters`), so a parameter added without an upper
bound fails `test_every_numeric_parameter_has_both_bounds`, and one whose bound the code cannot serve fails the
walk."""

import pytest

from api_schemas import ExplainParameters
from service.methods import METHODS
from tests.tiny_models import tiny_loaded, tiny_vit_loaded

pytestmark = pytest.mark.anyio
URL = "/v1/models/tiny/explain"
COMMON = ("top_k", "alpha", "overlay_max_side", "bbox_threshold")
PROPERTIES = ExplainParameters.model_json_schema(by_alias=True)["properties"]


def numeric_bounds(name: str) -> tuple[str, float, float] | None:
    """(type, minimum, maximum) of a numeric parameter, or None for the others."""
    for branch in PROPERTIES[name].get("anyOf", [PROPERTIES[name]]):
        if branch.get("type") in ("integer", "number"):
            return branch["type"], branch.get("minimum"), branch.get("maximum")
    return None


def test_every_numeric_parameter_has_both_bounds():
    numeric = {name: bounds for name in PROPERTIES if (bounds := numeric_bounds(name))}
    assert {"top_k", "seed", "samples", "steps", "window", "stride", "sigma", "noise"} <= set(numeric)
    for name, (_, low, high) in numeric.items():
        assert low is not None and high is not None, f"{name} needs both bounds in the schema"
    assert numeric["seed"][2] == 2**32 - 1  # numpy's RandomState takes no more


@pytest.mark.parametrize("method", list(METHODS))
async def test_each_parameter_at_and_past_its_bounds(serve, noise_png, method):
    names = [n for n in (*METHODS[method].parameters, *COMMON) if numeric_bounds(n)]
    model = tiny_loaded()
    if METHODS[method].not_applicable_to(model.module) is not None:
        model = tiny_vit_loaded("tiny")  # the methods that read a transformer's attention
    async with serve({"tiny": model}) as client:
        for name in names:
            kind, low, high = numeric_bounds(name)
            step = 1 if kind == "integer" else 0.5
            for value, inside in ((low, True), (high, True), (low - step, False), (high + step, False)):
                answer = await client.post(URL, params={"method": method, name: value}, files={"image": noise_png})
                assert answer.status_code < 500, (name, value, answer.text)
                if inside:
                    assert answer.status_code == 200 or answer.json()["error"]["code"] in (
                        "cost_exceeded",
                        "invalid_parameter",  # a bound of the service's settings below the schema's (top_k)
                    ), (name, value, answer.text)
                else:
                    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_parameter"


METRIC_TAKING = {
    "features_in_step": "pixel_flipping",
    "nr_samples": "monotonicity_correlation",
    "patch_size": "selectivity",
    "regions_evaluation": "region_perturbation",
    "nr_runs": "faithfulness_correlation",
    "subset_size": "faithfulness_correlation",
}
"""A metric that takes each numeric metric parameter."""


async def test_each_metric_parameter_at_and_past_its_bounds(serve, noise_png):
    """On the tiny model's 32 px input: inside the schema's bounds an answer, or a 400 that says why the input
    does not admit the value (a step that does not divide its pixels, a patch larger than it) or what it costs."""
    assert {name for name in PROPERTIES if name in METRIC_TAKING} == set(METRIC_TAKING)
    async with serve({"tiny": tiny_loaded()}) as client:
        for name, metric in METRIC_TAKING.items():
            _, low, high = numeric_bounds(name)
            for value, inside in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
                params = {"method": "saliency", "metrics": metric, name: value}
                answer = await client.post(URL, params=params, files={"image": noise_png})
                assert answer.status_code < 500, (name, value, answer.text)
                if inside:
                    assert answer.status_code == 200 or answer.json()["error"]["code"] in (
                        "cost_exceeded",
                        "invalid_parameter",
                    ), (name, value, answer.text)
                else:
                    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_parameter"
