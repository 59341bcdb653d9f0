"""Property-based: random bytes and random parameters (in the query, form fields or JSON) posted to explain
never get a 5xx, and every non-2xx answer is the one error body. In-process, tiny seeded model."""

import asyncio
import base64
import io
import json
import math
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import image_bytes, serve_in_process
from tests.tiny_models import tiny_loaded

URL = "/v1/models/tiny/explain"
# Valid values are mixed in, so that many requests get past validation into decoding and the worker.
VALID = {
    "method": ["cam", "grad_cam", "GradCAM++", "cam,grad_cam", ["cam", "grad_cam_pp"]],
    "class": [0, 4, "class_3", "2", [1, "class_2"]],
    "top_k": [1, 3, 5],
    "layer": ["features", "stem"],
    "colormap": ["jet", "viridis", "inferno", "turbo"],
    "alpha": [0.0, 0.5, 1.0],
    "include": ["map", "overlay", "logits", ["map", "overlay"]],
}


def good_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    return [
        image_bytes(picture, "PNG"),
        image_bytes(picture, "JPEG"),
        image_bytes(picture, "GIF"),
        image_bytes(picture.convert("RGBA"), "WEBP"),
        image_bytes(Image.new("RGB", (1, 1), (5, 5, 5)), "BMP"),
    ]


GOOD = good_images()


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """A good small image, random bytes, or a good image with a few bytes changed or its tail cut off."""
    kind = draw(st.sampled_from(["good", "random", "mutated", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(GOOD)))
    if kind == "mutated":
        changes = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=8)
        for position, value in draw(changes):
            data[position] = value
    elif kind == "truncated":
        del data[draw(st.integers(0, len(data) - 1)) :]
    return bytes(data)


scalars = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=3),  # '٣', '²', 'Ⅻ': digits or not?
    st.integers(1, 6000).map(lambda n: "9" * n),  # int() refuses strings of more than 4300 digits
    st.integers(),
    st.floats(),
    st.booleans(),
)
valid_parameters = st.fixed_dictionaries({}, optional={name: st.sampled_from(v) for name, v in VALID.items()})
unknown_names = st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), scalars, max_size=1)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    """Valid parameters with up to two of them random, and now and then a name that does not exist."""
    params = draw(valid_parameters)
    for name in draw(st.lists(st.sampled_from(list(VALID)), max_size=2, unique=True)):
        params[name] = draw(st.one_of(scalars, st.lists(scalars, min_size=1, max_size=4)))
    if draw(st.integers(0, 9)) == 0:
        params.update(draw(unknown_names))
    return params


json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def as_text(params: dict[str, Any]) -> dict[str, str | list[str]]:
    """Parameters as a query string or form fields carry them: text, lists as repeated names."""
    return {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in params.items()}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of `httpx.AsyncClient.post` for one request in one of the four body forms."""
    image = draw(images())
    params = draw(parameters())
    where = draw(st.sampled_from(["query", "form", "json", "raw"]))
    if where == "query":
        return {"params": as_text(params), "files": {"image": image}}
    if where == "form":
        return {"data": as_text(params), "files": {"image": image}}
    if where == "json":
        document = {**params, **draw(st.dictionaries(st.sampled_from(list(VALID)), json_values, max_size=1))}
        encoded = base64.b64encode(image).decode()
        document["image"] = draw(json_values) if draw(st.integers(0, 9)) == 0 else encoded
        return {"content": json.dumps(document).encode(), "headers": {"content-type": "application/json"}}
    content_type = draw(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "image/x-anything"]))
    return {"params": as_text(params), "content": image, "headers": {"content-type": content_type}}


@pytest.fixture(scope="module")
def post() -> Iterator[Callable[..., httpx.Response]]:
    """A synchronous `post(**kwargs)` to explain on one app kept running for all examples."""
    runner = asyncio.Runner()
    stack = AsyncExitStack()
    client = runner.run(stack.enter_async_context(serve_in_process({"tiny": tiny_loaded()})))
    try:
        yield lambda **kwargs: runner.run(client.post(URL, **kwargs))
    finally:
        runner.run(stack.aclose())
        runner.close()


def assert_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 300:
        assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message", "request_id"], body
        assert all(isinstance(v, str) and v for v in body["error"].values()), body
        assert body["error"]["request_id"] == response.headers["x-request-id"]
        return
    for explanation in body["explanations"]:
        if explanation["map"] is not None:
            assert all(isinstance(v, float) and math.isfinite(v) for row in explanation["map"]["data"] for v in row)
        if explanation["overlay_png"] is not None:
            Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png"])), formats=["PNG"]).load()


@given(request=requests())  # 150 examples; the profiles are in tests/conftest.py
def test_random_bytes_and_parameters_never_get_a_5xx(post, request):
    response = post(**request)
    assert_answer(response)
    event(f"{response.status_code} {response.json().get('error', {}).get('code', '')}")  # --hypothesis-show-statistics


def test_the_service_still_serves_after_the_fuzzing(post):
    response = post(files={"image": GOOD[0]})
    assert response.status_code == 200, response.text
