"""An answer's size is bounded before any work: explanations per request (methods x classes), and the answer's
estimated bytes (maps, overlays, logits) against MAX_ANSWER_BYTES, with the ways to shrink it in the message."""

import numpy as np
import pytest
from PIL import Image

from api_schemas import ExplainParameters
from service.core.settings import Settings
from service.http.parameters import plan_explanation
from service.http.responses import estimate_explain_bytes
from tests.conftest import image_bytes
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
URL = "/v1/models/tiny/explain"
CHEAP = (
    "cam,grad_cam,grad_cam_pp,xgrad_cam,layer_cam,hires_cam,eigen_cam,grad_cam_elementwise,eigen_grad_cam,random_cam"
)
PHOTO_SIZE = (640, 480)  # overlays of 512 x 384


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A photo-like picture (smooth gradients and noise), as JPEG."""
    y, x = np.mgrid[0 : PHOTO_SIZE[1], 0 : PHOTO_SIZE[0]]
    rng = np.random.default_rng(0)
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1) + rng.integers(0, 40, (*x.shape, 3))
    return image_bytes(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), "JPEG", quality=90)


async def test_too_many_explanations_are_refused_before_any_work(serve, photo):
    async with serve({"tiny": tiny_loaded()}) as client:
        answer = await client.post(
            URL, params={"method": CHEAP + ",saliency,gradient_x_input", "top_k": 10}, files={"image": photo}
        )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and "12 methods x 10 classes are 120 explanations" in error["message"]
    assert "at most 64" in error["message"]


async def test_an_answer_over_the_bound_is_refused_with_what_shrinks_it(serve, photo):
    params = {"method": "cam,grad_cam,grad_cam_pp,xgrad_cam,layer_cam,hires_cam", "top_k": 3}
    async with serve({"tiny": tiny_loaded()}, max_answer_bytes=4 * 1024 * 1024) as client:
        refused = await client.post(URL, params=params, files={"image": photo})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "answer_too_large" and "the bound is 4.0 MiB" in error["message"]
        for shrinker in ("map_encoding=base64", "overlay_format=jpeg or webp", "overlay_max_side", "include="):
            assert shrinker in error["message"]
        smaller = await client.post(URL, params=params | {"overlay_format": "webp"}, files={"image": photo})
        assert smaller.status_code == 200 and len(smaller.json()["explanations"]) == 18
        assert len(smaller.content) < 4 * 1024 * 1024


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"method": "cam,grad_cam,grad_cam_pp", "top_k": 3},
        {"method": "saliency,grad_cam", "map_encoding": "base64", "top_k": 2},
        {"method": "grad_cam", "overlay_format": "jpeg", "top_k": 5},
        {"method": "grad_cam,saliency", "include": "map"},
    ],
)
async def test_the_estimate_bounds_the_real_answer(serve, photo, params):
    model = tiny_loaded()
    settings = Settings()
    plan = plan_explanation(ExplainParameters(**params), model, 10, 4096, 16, 512, 64)
    overlay = (512, 384) if "overlay" in plan.include else None
    estimate = estimate_explain_bytes(plan, model, overlay)
    async with serve({"tiny": model}) as client:
        answer = await client.post(URL, params=params, files={"image": photo})
    assert answer.status_code == 200, answer.text
    assert len(answer.content) <= estimate <= settings.max_answer_bytes
    assert estimate < 20 * len(answer.content)  # an estimate, not a wild guess
