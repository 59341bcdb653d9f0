"""Hostile and odd input over HTTP, in-process: each case is a specific status in the one error body (or a
deliberate 200), and the service still serves afterwards. Parameters and unreadable bodies: test_errors.py;
decoding details: tests/service/imaging/test_decoding.py; the wire itself: test_wire_limits.py."""

import base64
import io
import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from service.http.request_body import MAX_FORM_FIELDS
from tests.api.checks import assert_error, assert_still_serving
from tests.conftest import image_bytes
from tests.crafted_files import png_header, psd_file
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
TINY = "/v1/models/tiny/explain"
LIMIT = 16_384  # over the 6 KB noise_png, which must still pass


@pytest.fixture
def models():
    return {"tiny": tiny_loaded()}


def multipart(data: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def over_the_limit(form: str) -> tuple[bytes, str]:
    """A body of more than LIMIT bytes in one of the three forms, and its content type."""
    if form == "raw":
        return b"\x00" * (LIMIT + 1000), "image/png"
    if form == "json":
        return json.dumps({"image": base64.b64encode(b"\x00" * LIMIT).decode()}).encode(), "application/json"
    return multipart(b"\x00" * (LIMIT + 1000))


class CountingBody:
    """An async body in 500-byte chunks that counts how many chunks the app pulled."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pulled = 0

    async def __aiter__(self):
        for start in range(0, len(self.data), 500):
            self.pulled += 1
            yield self.data[start : start + 500]

    @property
    def chunks(self) -> int:
        return math.ceil(len(self.data) / 500)


# --- transport --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["raw", "json", "multipart"])
@pytest.mark.parametrize("declared", ["over", "lying under", "omitted"])
async def test_a_body_over_the_limit_is_413_whatever_content_length_says(serve, models, noise_png, form, declared):
    data, content_type = over_the_limit(form)
    body = CountingBody(data)
    headers = {"content-type": content_type}
    if declared == "over":
        headers["content-length"] = str(10**9)
    elif declared == "lying under":
        headers["content-length"] = "100"
    async with serve(models, max_body_bytes=LIMIT) as client:
        response = await client.post(TINY, content=body, headers=headers)  # no length given: chunked
        assert_error(response, 413, "payload_too_large", str(LIMIT))
        if declared == "over":
            assert body.pulled == 0  # refused from the header, before reading
        else:
            assert body.pulled <= LIMIT // 500 + 1 < body.chunks  # counted while streaming, stopped at the limit
        await assert_still_serving(client, TINY, noise_png)


@pytest.mark.parametrize(
    ("fields", "files", "hint"),
    [
        ({f"f{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}, 1, "Too many fields"),  # one more than the schema's
        ({f"f{i}": "" for i in range(1001)}, 1, "Too many fields"),  # starlette's own default is 1000
        ({}, 4, "Too many files"),  # three files at most: the image, a reference and a mask
        ({}, 2, "several 'image' parts"),
        ({}, 1001, "Too many files"),
        ({"method": "x" * (1024 * 1024 + 1)}, 1, "maximum size of 1024KB"),  # a text field over 1 MB
    ],
    ids=["too-many-fields", "1001-fields", "4-files", "2-images", "1001-files", "1MB-text-field"],
)
async def test_too_many_or_too_large_multipart_parts_are_400(serve, models, noise_png, fields, files, hint):
    async with serve(models) as client:
        response = await client.post(TINY, data=fields, files=[("image", noise_png)] * files)
        assert_error(response, 400, "invalid_multipart", hint)
        await assert_still_serving(client, TINY, noise_png)


async def test_a_large_file_part_under_the_body_limit_is_read(serve, models, noise_png):
    async with serve(models) as client:  # starlette spools file parts; only MAX_BODY_BYTES bounds them
        response = await client.post(TINY, files={"image": noise_png + b"\x00" * 1_500_000})
        assert response.status_code == 200, response.text  # PNG readers ignore bytes after IEND


BACKTRACKING_CONTENT_TYPES = {
    "backslashes, unclosed quote": 'multipart/form-data; boundary="' + "\\" * 5000 + "a",
    "backslashes x50000": 'multipart/form-data; boundary="' + "\\" * 50_000,
    "escaped quotes": 'multipart/form-data; boundary="' + '\\"' * 5000 + '"',
    "long boundary": "multipart/form-data; boundary=" + "a" * 10_000,
    "20000 semicolons": "multipart/form-data" + ";" * 20_000,
    "empty quoted boundary": 'multipart/form-data; boundary=""',
}


@pytest.mark.parametrize("name", sorted(BACKTRACKING_CONTENT_TYPES))
async def test_a_content_type_made_to_backtrack_is_400_at_once(serve, models, noise_png, name):
    """CVE-2024-24762: python-multipart's header regex stalled the event loop on such values."""
    async with serve(models) as client:
        started = time.perf_counter()
        response = await client.post(
            TINY, content=b"--a\r\n" * 100, headers={"content-type": BACKTRACKING_CONTENT_TYPES[name]}
        )
        elapsed = time.perf_counter() - started
        print(f"{name}: {response.status_code} in {elapsed * 1000:.1f} ms")
        assert_error(response, 400, "invalid_multipart")
        assert elapsed < 5.0  # a generous bound: it answers, and does not hang
        await assert_still_serving(client, TINY, noise_png)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=x",
        "application/xml",
        "image",
        "*/*",
        "text/html; charset=utf-8",
    ],
)
async def test_other_content_types_are_415_naming_the_accepted_ones(serve, models, noise_png, content_type):
    async with serve(models) as client:
        response = await client.post(TINY, content=noise_png, headers={"content-type": content_type})
        assert_error(response, 415, "unsupported_media_type", "multipart/form-data", "application/json", "image/*")
        await assert_still_serving(client, TINY, noise_png)


async def test_a_content_type_that_does_not_match_the_body(serve, models, noise_png):
    async with serve(models) as client:
        as_json = await client.post(TINY, content=noise_png, headers={"content-type": "application/json"})
        assert_error(as_json, 400, "invalid_json")
        as_image = await client.post(TINY, content=b'{"image": "x"}', headers={"content-type": "image/png"})
        assert_error(as_image, 415, "unsupported_image")
        jpeg_as_png = image_bytes(Image.open(io.BytesIO(noise_png)).convert("RGB"), "JPEG")
        sniffed = await client.post(TINY, content=jpeg_as_png, headers={"content-type": "image/png"})
        assert sniffed.status_code == 200  # the format is read from the bytes, not from the header


# --- images -----------------------------------------------------------------------------------------------------


async def test_a_decompression_bomb_is_413_and_the_service_serves_on(serve, models, noise_png):
    async with serve(models) as client:
        for width, height in ((30_000, 30_000), (8_000, 8_000)):
            response = await client.post(TINY, files={"image": png_header(width, height)})
            assert_error(response, 413, "image_too_large")
        await assert_still_serving(client, TINY, noise_png)


def half(fmt: str) -> bytes:
    data = image_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (psd_file(), 415, "unsupported_image"),
        (image_bytes(Image.new("RGB", (16, 16)), "EPS"), 415, "unsupported_image"),
        (image_bytes(Image.new("RGB", (16, 16)), "ICO"), 415, "unsupported_image"),
        (image_bytes(Image.new("RGB", (16, 16)), "PDF"), 415, "unsupported_image"),
        *((half(fmt), 422, "invalid_image") for fmt in ("GIF", "WEBP", "BMP", "TIFF")),
        (png_header(0, 16), 415, "unsupported_image"),
        (png_header(2**31 - 1, 1), 413, "image_too_large"),
    ],
    ids=["psd", "eps", "ico", "pdf", "half-gif", "half-webp", "half-bmp", "half-tiff", "png-0-wide", "png-2^31-wide"],
)
async def test_unreadable_images_are_4xx(serve, models, noise_png, data, status, code):
    async with serve(models) as client:
        assert_error(await client.post(TINY, files={"image": data}), status, code)
        await assert_still_serving(client, TINY, noise_png)


def explanations(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["explanations"]


def overlay_size(explanation: dict) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png"])), formats=["PNG"]).size


def assert_finite_maps(items: list[dict]) -> None:
    for item in items:
        values = [v for row in item["map"]["data"] for v in row]
        assert values and all(isinstance(v, float) and math.isfinite(v) for v in values), item["map"]


ALL_METHODS = {"method": ["cam", "grad_cam", "grad_cam_pp"]}


@pytest.mark.parametrize("size", [(1, 1), (1, 10_000), (10_000, 1), (3, 2)])
async def test_single_pixel_and_strip_images_are_explained(serve, models, size):
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    data = image_bytes(Image.fromarray(pixels), "PNG")
    async with serve(models) as client:
        items = explanations(await client.post(TINY, params=ALL_METHODS, files={"image": data}))
    assert len(items) == 3
    assert_finite_maps(items)
    width, height = size
    scale = min(1.0, 512 / max(size))
    assert all(overlay_size(item) == (max(1, round(width * scale)), max(1, round(height * scale))) for item in items)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
async def test_a_multi_frame_file_is_explained_from_its_first_frame(serve, models, fmt):
    rng = np.random.default_rng(2)
    noise = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(3)]
    frames = [frame.convert("P").convert("RGB") for frame in noise]  # GIF keeps a palette picture exactly
    extra = {"lossless": True} if fmt == "WEBP" else {}
    animated = image_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], **extra)
    async with serve(models) as client:
        whole = explanations(await client.post(TINY, files={"image": animated}))
        first = explanations(await client.post(TINY, files={"image": image_bytes(frames[0], "PNG")}))
    assert whole[0]["map"] == first[0]["map"]


ORIENTATIONS = {  # EXIF orientation -> how the camera stored an upright picture
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    5: Image.Transpose.TRANSPOSE,
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
async def test_an_exif_rotated_photo_is_explained_upright(serve, models, cat_photo, orientation):
    upright = cat_photo.resize((90, 60))  # landscape, so a wrong rotation changes the overlay's size
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = image_bytes(upright.transpose(ORIENTATIONS[orientation]), "PNG", exif=exif.tobytes())
    async with serve(models) as client:
        rotated = explanations(await client.post(TINY, params=ALL_METHODS, files={"image": stored}))
        plain = image_bytes(upright, "PNG")
        reference = explanations(await client.post(TINY, params=ALL_METHODS, files={"image": plain}))
    for got, expected in zip(rotated, reference, strict=True):
        assert got["class"] == expected["class"] and got["map"] == expected["map"]
        assert overlay_size(got) == (90, 60)


async def test_an_exif_rotated_jpeg_is_explained_as_its_upright_pixels(serve, models, cat_photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = image_bytes(cat_photo.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    upright = Image.open(io.BytesIO(jpeg)).transpose(Image.Transpose.ROTATE_270)  # what a viewer shows
    async with serve(models) as client:
        rotated = explanations(await client.post(TINY, files={"image": jpeg}))
        reference = explanations(await client.post(TINY, files={"image": image_bytes(upright, "PNG")}))
    assert rotated[0]["map"] == reference[0]["map"]
    assert overlay_size(rotated[0]) == cat_photo.size == upright.size


def gray_levels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (20, 24), dtype=np.uint16)


def gray8() -> Image.Image:
    return Image.fromarray(gray_levels().astype(np.uint8))


@pytest.mark.parametrize(
    ("odd", "plain"),
    [
        (lambda: Image.fromarray(gray_levels() * 257), gray8),
        (lambda: gray8().convert("LA"), gray8),
        (lambda: Image.new("RGBA", (20, 20), (10, 200, 30, 255)), lambda: Image.new("RGB", (20, 20), (10, 200, 30))),
        (lambda: Image.new("RGBA", (20, 20), (10, 200, 30, 0)), lambda: Image.new("RGB", (20, 20), (255, 255, 255))),
        (lambda: Image.new("P", (20, 20), 0), lambda: Image.new("RGB", (20, 20), (0, 0, 0))),
    ],
    ids=["16-bit-gray", "LA-opaque", "RGBA-opaque", "RGBA-clear", "palette"],
)
async def test_odd_modes_are_explained_like_their_rgb_equivalent(serve, models, odd, plain):
    async with serve(models) as client:
        got = explanations(await client.post(TINY, files={"image": image_bytes(odd(), "PNG")}))
        expected = explanations(await client.post(TINY, files={"image": image_bytes(plain(), "PNG")}))
    assert got[0]["map"] == expected[0]["map"]


async def test_palette_transparency_and_cmyk_are_explained(serve, models):
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0] + [0] * 765)
    transparent = image_bytes(palette, "PNG", transparency=0)
    cmyk = image_bytes(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG")
    async with serve(models) as client:
        clear = explanations(await client.post(TINY, files={"image": transparent}))
        white_png = image_bytes(Image.new("RGB", (20, 20), "white"), "PNG")
        white = explanations(await client.post(TINY, files={"image": white_png}))
        assert clear[0]["map"] == white[0]["map"]  # transparent pixels are white, not black
        assert_finite_maps(explanations(await client.post(TINY, files={"image": cmyk})))


# --- degenerate maps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", [(0, 0, 0), (255, 255, 255), (128, 128, 128)])
async def test_a_blank_image_gives_finite_maps_for_every_method_and_class(serve, models, color):
    blank = image_bytes(Image.new("RGB", (40, 40), color), "PNG")
    async with serve(models) as client:
        response = await client.post(TINY, params={**ALL_METHODS, "top_k": 5}, files={"image": blank})
    items = explanations(response)
    assert len(items) == 15
    assert_finite_maps(items)
    assert all(overlay_size(item) == (40, 40) for item in items)


async def test_the_class_the_model_likes_least_gives_finite_maps(serve, models, noise_png):
    async with serve(models) as client:
        logits = (await client.post("/v1/models/tiny/predict", files={"image": noise_png})).json()["logits"]
        least = int(np.argmin(logits))
        response = await client.post(TINY, params={**ALL_METHODS, "class": least}, files={"image": noise_png})
    items = explanations(response)
    assert [item["class"]["index"] for item in items] == [least] * 3
    assert_finite_maps(items)
