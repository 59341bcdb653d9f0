"""Catalogue, health and metrics endpoints; the public surface pinned to the code."""

import typing
from pathlib import Path

import pytest
import yaml

from api_schemas import Colormap, ExplainParameters, MethodName
from service.http.openapi_export import openapi_yaml
from service.imaging.encoding import colormap_names
from service.methods import METHODS
from tests.tiny_models import TinyFlatNet, tiny_loaded, tiny_vit_loaded

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


@pytest.fixture
def models():
    return {"tiny": tiny_loaded(), "flat": tiny_loaded("flat", TinyFlatNet)}


async def test_models_and_methods_are_listed(serve, models):
    async with serve(models) as client:
        listed = (await client.get("/v1/models")).json()["models"]
        tiny = (await client.get("/v1/models/tiny")).json()
        flat = (await client.get("/v1/models/flat")).json()
        methods = (await client.get("/v1/methods")).json()["methods"]
    assert [m["name"] for m in listed] == ["tiny", "flat"]
    assert tiny["input_size"] == [32, 32] and tiny["num_classes"] == 5 and tiny["default_layer"] == "features"
    assert tiny["layers"] == ["stem.0", "stem.1", "stem", "features.0", "features.1", "features"]  # execution order
    attention = ["attention_rollout", "transformer_attribution", "generic_attention"]  # transformers only
    convolutional = [m for m in METHODS if m not in attention]
    assert tiny["methods"] == convolutional and flat["methods"] == [m for m in convolutional if m != "cam"]
    assert tiny["device"] == "cpu"
    by_name = {m["name"]: m for m in methods}
    assert set(by_name) == set(METHODS)
    assert by_name["cam"]["cost"] == "the shared forward pass" and by_name["cam"]["parameters"] == ["layer"]
    assert (
        by_name["smoothgrad"]["parameters"] == ["samples", "noise", "seed", "nt_type"]
        and by_name["smoothgrad"]["input_resolution"]
    )
    assert by_name["eigen_cam"]["sanity_check"] is False and by_name["grad_cam"]["sanity_check"] is True
    assert all(m["raw_map"] and m["paper"] and m["cost"] for m in methods)


async def test_health_readiness_and_metrics(serve, models, noise_png):
    async with serve(models) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "models": {}}
        ready = (await client.get("/readyz")).json()
        assert ready == {"status": "ready", "models": {"tiny": True, "flat": True}, "job_store": "memory"}
        await client.post("/v1/models/tiny/explain", files={"image": noise_png})
        await client.post("/v1/models/tiny/explain", params={"method": "nope"}, files={"image": noise_png})
        metrics = (await client.get("/metrics")).text
    assert 'explain_http_requests_total{route="/v1/models/{model}/explain",status="200"} 1.0' in metrics
    assert 'explain_http_requests_total{route="/v1/models/{model}/explain",status="400"} 1.0' in metrics
    assert 'explain_queue_depth{model="tiny"} 0.0' in metrics
    assert 'explain_batch_size_count{model="tiny"} 1.0' in metrics
    assert 'explain_inference_seconds_count{model="tiny"}' in metrics


async def test_not_ready_before_start_up(models):
    import httpx

    from service.core.settings import Settings
    from service.http.app import create_app

    app = create_app(Settings(models=["tiny"]), models=models)  # lifespan not run: models not warm
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
        assert (await client.get("/v1/models")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


async def test_client_request_ids_are_echoed(serve, models):
    async with serve(models) as client:
        response = await client.get("/v1/models/nope", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123" and response.json()["error"]["request_id"] == "abc-123"


def test_openapi_yaml_is_exported_from_the_app():
    assert (ROOT / "openapi.yaml").read_text() == openapi_yaml(), "run `make openapi` and commit openapi.yaml"


def test_method_registry_schema_literal_and_openapi_enum_agree():
    spec = yaml.safe_load(openapi_yaml())
    enum = spec["components"]["schemas"]["Explanation"]["properties"]["method"]["enum"]
    assert set(METHODS) == set(typing.get_args(MethodName)) == set(enum)


def test_every_method_parameter_is_a_request_parameter_with_the_method_s_default_unset():
    """A method's options type names its parameters; each must be a field of the wire model (default None, so
    that the method's own default applies), or a client could never set it."""
    wire = ExplainParameters.model_fields
    for method in METHODS.values():
        for name in method.parameters:
            assert name in wire and wire[name].default is None, (method.name, name)


def test_colormap_literal_matches_the_shipped_tables():
    assert set(typing.get_args(Colormap)) == set(colormap_names())


async def test_a_vision_transformer_lists_the_methods_that_read_its_attention(serve, models):
    async with serve({**models, "vit": tiny_vit_loaded("vit")}) as client:
        vit = (await client.get("/v1/models/vit")).json()
    assert {"attention_rollout", "transformer_attribution", "generic_attention", "grad_cam"} <= set(vit["methods"])
