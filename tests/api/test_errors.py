"""Every bad input gets a 4xx in the one error body, and the service keeps serving."""

import asyncio
import base64
import threading

import pytest
import torch
from PIL import Image

from tests.api.checks import assert_error
from tests.conftest import image_bytes
from tests.tiny_models import TinyFlatNet, TinyGapNet, prepare_tiny, tiny_loaded

pytestmark = pytest.mark.anyio
TINY = "/v1/models/tiny/explain"
JSON = {"content-type": "application/json"}


@pytest.fixture
def models():
    return {"tiny": tiny_loaded(), "flat": tiny_loaded("flat", TinyFlatNet)}


@pytest.mark.parametrize(
    ("params", "status", "code", "hints"),
    [
        ({"method": "no_such_method"}, 400, "unknown_method", ["grad_cam_pp"]),
        ({"layer": "nope"}, 400, "unknown_layer", ["GET /v1/models/tiny"]),
        ({"class": 5}, 400, "unknown_class", ["0..4"]),
        ({"class": -1}, 400, "unknown_class", ["0..4"]),
        ({"class": "zebra"}, 400, "unknown_class", ["label"]),
        ({"class": "\u00b2"}, 400, "unknown_class", ["0..4"]),  # str.isdigit() is true, int() refuses it
        ({"class": "1" * 5000}, 400, "unknown_class", ["out of range"]),  # over int()'s 4300 digits
        ({"class": [str(i) for i in range(11)]}, 400, "invalid_parameter", ["at most 10"]),
        ({"class": 1, "top_k": 2}, 400, "conflicting_parameters", ["top_k"]),
        ({"top_k": 0}, 400, "invalid_parameter", ["top_k"]),
        ({"top_k": 11}, 400, "invalid_parameter", ["at most 10"]),
        ({"top_k": "many"}, 400, "invalid_parameter", ["top_k"]),
        ({"top_k": -1}, 400, "invalid_parameter", ["top_k"]),
        ({"top_k": 10**30}, 400, "invalid_parameter", ["top_k", "64"]),  # the schema's bound first
        ({"top_k": "9" * 5000}, 400, "invalid_parameter", ["top_k"]),
        ({"alpha": 1.5}, 400, "invalid_parameter", ["alpha"]),
        ({"alpha": -0.1}, 400, "invalid_parameter", ["alpha"]),
        ({"alpha": "nan"}, 400, "invalid_parameter", ["alpha", "finite"]),
        ({"layer": "features\x00"}, 400, "unknown_layer", ["default: features"]),
        ({"colormap": "rainbow"}, 400, "invalid_parameter", ["jet", "viridis", "inferno", "turbo"]),
        ({"include": "everything"}, 400, "invalid_parameter", ["overlay"]),
        ({"methods": "cam"}, 400, "invalid_parameter", ["methods"]),
        ({"method": "cam", "layer": "stem"}, 400, "method_not_applicable", ["features"]),
    ],
)
async def test_bad_parameters_are_400_with_the_valid_choices(serve, models, noise_png, params, status, code, hints):
    async with serve(models) as client:
        response = await client.post(TINY, params=params, files={"image": noise_png})
        assert_error(response, status, code, *hints)
        assert (await client.post(TINY, files={"image": noise_png})).status_code == 200


@pytest.mark.parametrize(
    ("fields", "hint"),
    [
        ('"class": true', "class"),  # not class 1
        ('"class": 1.5', "class"),
        ('"class": [[1]]', "class"),
        ('"alpha": NaN', "finite"),  # Python's json reads NaN and Infinity
        ('"alpha": -Infinity', "finite"),
        ('"method": 5', "method"),
        ('"include": ["map", "pixels"]', "include"),
    ],
)
async def test_json_values_of_the_wrong_kind_are_400(serve, models, noise_png, fields, hint):
    body = f'{{"image": "{base64.b64encode(noise_png).decode()}", {fields}}}'
    async with serve(models) as client:
        response = await client.post(TINY, content=body, headers={"content-type": "application/json"})
        assert_error(response, 400, "invalid_parameter", hint)


async def test_cam_on_a_head_that_is_not_gap_linear_is_refused(serve, models, noise_png):
    async with serve(models) as client:
        response = await client.post("/v1/models/flat/explain", params={"method": "cam"}, files={"image": noise_png})
        assert_error(response, 400, "method_not_applicable", "grad_cam")
        ok = await client.post("/v1/models/flat/explain", params={"method": "grad_cam"}, files={"image": noise_png})
        assert ok.status_code == 200


async def test_a_parameter_in_both_query_and_body_is_refused(serve, models, noise_png):
    async with serve(models) as client:
        response = await client.post(TINY, params={"top_k": 1}, data={"top_k": "2"}, files={"image": noise_png})
    assert_error(response, 400, "conflicting_parameters", "top_k")


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"content": b"hello"}, 415, "unsupported_media_type"),
        ({"content": b"\x00" * 300, "headers": {"content-type": "image/png"}}, 415, "unsupported_image"),
        (
            {"content": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "headers": {"content-type": "image/svg+xml"}},
            415,
            "unsupported_image",
        ),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 422, "invalid_image"),
        ({"json": {"image": "iVBOR***w0K"}}, 422, "invalid_base64"),
        ({"json": {"image": "abcde"}}, 422, "invalid_base64"),
        ({"json": {"image": "iVBORw0K==GgoAAAA"}}, 422, "invalid_base64"),  # padding inside
        ({"json": {"image": "iVBORw0KGgo\u00e9"}}, 422, "invalid_base64"),  # not ASCII
        ({"json": {"image": "data:image/png,iVBORw0KGgo"}}, 422, "invalid_base64"),  # a data URL, not base64
        ({"json": {"image": ""}}, 422, "invalid_image"),
        ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, 400, "invalid_json"),  # too deep
        ({"content": b'{"image": "", "top_k": ' + b"1" * 5000 + b"}", "headers": JSON}, 400, "invalid_json"),
        ({"json": {"picture": "abcd"}}, 400, "missing_image"),
        ({"json": ["image"]}, 400, "invalid_json"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"data": {"method": "cam"}, "files": {"other": b"x"}}, 400, "missing_image"),
        ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "invalid_multipart"),
    ],
)
async def test_unreadable_bodies_are_4xx(serve, models, kwargs, status, code):
    async with serve(models) as client:
        response = await client.post(TINY, **kwargs)
        assert_error(response, status, code)
        assert (await client.get("/readyz")).status_code == 200


async def test_truncated_images_are_422(serve, models, cat_jpeg, noise_png):
    async with serve(models) as client:
        for data in (cat_jpeg[: len(cat_jpeg) // 2], noise_png[: len(noise_png) // 2]):
            assert_error(await client.post(TINY, files={"image": data}), 422, "invalid_image")


async def test_base64_variants_accepted_on_purpose(serve, models, noise_png):
    standard = base64.b64encode(noise_png).decode()
    variants = [
        "data:image/png;base64," + standard,
        "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76)),
        "  DATA:image/png;BASE64," + standard + "\n",
        standard.rstrip("="),
        base64.urlsafe_b64encode(noise_png).decode(),
    ]
    async with serve(models) as client:
        for text in variants:
            assert (await client.post(TINY, json={"image": text})).status_code == 200


async def test_bodies_and_images_over_the_limits_are_413(serve, models, noise_png):
    big = image_bytes(Image.new("RGB", (2000, 2000)), "PNG")
    async with serve(models, max_body_bytes=4096, max_image_pixels=10_000) as client:
        assert_error(await client.post(TINY, files={"image": b"\x00" * 5000}), 413, "payload_too_large")
        raw = await client.post(TINY, content=b"\x00" * 5000, headers={"content-type": "image/png"})
        assert_error(raw, 413, "payload_too_large")
        as_json = await client.post(TINY, json={"image": base64.b64encode(b"\x00" * 4000).decode()})
        assert_error(as_json, 413, "payload_too_large")

        async def stream():  # no Content-Length: the app counts bytes as they arrive
            for _ in range(10):
                yield b"\x00" * 1000

        streamed = await client.post(TINY, content=stream(), headers={"content-type": "image/png"})
        assert_error(streamed, 413, "payload_too_large")
    async with serve(models, max_image_pixels=10_000) as client:
        assert_error(await client.post(TINY, files={"image": big}), 413, "image_too_large", "2000x2000")
        assert (await client.post(TINY, files={"image": noise_png})).status_code == 200


async def test_unknown_model_route_and_verb_use_the_error_body(serve, models, noise_png):
    async with serve(models) as client:
        assert_error(
            await client.post("/v1/models/nope/explain", files={"image": noise_png}), 404, "model_not_found", "tiny"
        )
        assert_error(await client.get("/v1/models/nope"), 404, "model_not_found")
        assert_error(await client.get("/v2/anything"), 404, "not_found")
        assert_error(await client.get(TINY), 405, "method_not_allowed")
        assert_error(
            await client.post("/v1/models/tiny/predict", params={"x": 1}, files={"image": noise_png}),
            400,
            "invalid_parameter",
        )


class GatedNet(TinyGapNet):
    """A tiny model whose forward waits for a gate, to hold the worker busy; counts executed images."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.executed = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(timeout=30)
        self.executed += x.shape[0]
        return super().forward(x)


def gated_model():
    torch.manual_seed(0)
    module = GatedNet()
    model = prepare_tiny("gated", module)
    module.executed = 0
    module.entered.clear()
    return model, module


async def wait_until(condition, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_a_full_queue_answers_503_at_once_and_the_rest_200(serve, noise_png):
    model, module = gated_model()
    module.gate.clear()
    async with serve({"gated": model}, max_queue=3, max_batch_size=1, max_batch_delay_ms=0) as client:
        url = "/v1/models/gated/explain"
        first = asyncio.create_task(client.post(url, files={"image": noise_png}))
        await wait_until(module.entered.is_set)  # the worker holds the first request, blocked on the gate
        burst = [asyncio.create_task(client.post(url, files={"image": noise_png})) for _ in range(6)]
        await wait_until(lambda: sum(t.done() for t in burst) >= 3)
        await asyncio.sleep(0.2)
        rejected = [t.result() for t in burst if t.done()]
        module.gate.set()
        responses = [await first] + [await t for t in burst]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 4 + [503] * 3
    assert len(rejected) == 3 and all(r.status_code == 503 for r in rejected)
    for r in rejected:
        assert_error(r, 503, "queue_full")
        assert r.headers["retry-after"] == "1"
    assert module.executed == 4


async def test_a_request_past_its_deadline_is_504_and_never_run(serve, noise_png):
    model, module = gated_model()
    module.gate.clear()
    async with serve({"gated": model}, request_timeout_s=0.3, max_batch_size=1, max_batch_delay_ms=0) as client:
        url = "/v1/models/gated/explain"
        first = asyncio.create_task(client.post(url, files={"image": noise_png}))
        await wait_until(module.entered.is_set)
        second = asyncio.create_task(client.post(url, files={"image": noise_png}))
        assert_error(await second, 504, "timeout")
        module.gate.set()
        assert_error(await first, 504, "timeout")
        await asyncio.sleep(0.2)
        assert module.executed == 1  # the first was already running; the second never ran
        assert (await client.post(url, files={"image": noise_png})).status_code == 200
