"""Maps to pictures and text: normalisation, colormaps, overlays and base64."""

import base64
import io

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from service.imaging.encoding import colormap_table, decode_base64_image, encode_overlay, normalize_map

COLORMAPS = ["jet", "viridis", "inferno", "turbo"]


def test_normalize_map_relu_min_max_and_degenerate_cases():
    np.testing.assert_allclose(normalize_map(np.array([[-1.0, 0.0], [1.0, 3.0]])), [[0.0, 0.0], [1 / 3, 1.0]])
    assert normalize_map(torch.tensor([[1.0, 2.0]])).dtype == np.float32  # a CPU tensor is read as an array
    for degenerate in (np.zeros((3, 3)), np.full((3, 3), 5.0), np.full((3, 3), np.nan)):
        assert np.array_equal(normalize_map(degenerate), np.zeros((3, 3)))


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormap_tables_match_matplotlib(name):
    expected = (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    assert np.array_equal(colormap_table(name), expected)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_overlay_blends_the_map_on_the_whole_picture():
    picture = np.zeros((30, 50, 3), dtype=np.uint8)
    raw = np.zeros((7, 7), dtype=np.float32)
    raw[0, 0] = 1.0
    overlay = decoded(encode_overlay(picture, raw, "jet", alpha=1.0))
    assert overlay.shape == (30, 50, 3)
    assert tuple(overlay[0, 0]) == tuple(colormap_table("jet")[255].tolist())  # hottest corner
    assert tuple(overlay[-1, -1]) == tuple(colormap_table("jet")[0].tolist())
    half = decoded(encode_overlay(picture, raw, "jet", alpha=0.5))
    assert abs(int(half[-1, -1, 2]) - int(colormap_table("jet")[0, 2]) // 2) <= 1


def test_an_overlay_with_an_extent_spreads_the_map_s_top_left_part_over_the_picture():
    """A letterboxed detector's map: the picture covers its left half, which is cold; the hot right half shows
    only in its last column's blend at the picture's right edge."""
    picture = np.zeros((20, 40, 3), dtype=np.uint8)
    raw = np.zeros((2, 8), dtype=np.float32)
    raw[:, 4:] = 1.0
    cold = np.array(colormap_table("jet")[0])
    whole = decoded(encode_overlay(picture, raw, "jet", alpha=1.0))
    left = decoded(encode_overlay(picture, raw, "jet", alpha=1.0, extent=(1.0, 0.5)))
    assert not (whole[:, 25:30] == cold).all(axis=-1).any()
    assert (left[:, :34] == cold).all() and not (left[:, -1] == cold).all()


def float_overlay(picture: np.ndarray, raw: np.ndarray, colormap: str, alpha: float) -> np.ndarray:
    """The overlay computed in float at full size with torch: the definition the 8-bit path must follow."""
    heat = torch.from_numpy(normalize_map(raw))[None, None]
    heat = F.interpolate(heat, size=picture.shape[:2], mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    colors = torch.tensor(colormap_table(colormap))[(heat * 255).round().long()].float()
    blended = (1 - alpha) * torch.from_numpy(picture).float() + alpha * colors
    return blended.round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_the_8_bit_overlay_follows_the_float_definition_within_one_colormap_step(colormap, cat_photo):
    """Stated tolerance: at most 1 level in 99.9% of the values, and nowhere more than one step between
    neighbouring colormap entries (the heat level may round the other way) plus 1."""
    picture = np.asarray(cat_photo)
    table = colormap_table(colormap).astype(int)
    step = int(np.abs(np.diff(table, axis=0)).max())
    rng = np.random.default_rng(0)
    for raw, alpha in ((rng.normal(size=(7, 7)), 0.5), (rng.normal(size=(224, 224)), 1.0), (rng.random((7, 7)), 0.3)):
        ours = decoded(encode_overlay(picture, raw.astype(np.float32), colormap, alpha)).astype(int)
        difference = np.abs(ours - float_overlay(picture, raw, colormap, alpha))
        assert np.quantile(difference, 0.999) <= 1 and difference.max() <= step + 1, (colormap, alpha)


def test_overlay_formats_decode_to_the_same_picture(cat_photo):
    picture = np.asarray(cat_photo)
    raw = np.random.default_rng(1).normal(size=(7, 7)).astype(np.float32)
    png = encode_overlay(picture, raw, "viridis", 0.5, "png")
    assert png.startswith(b"\x89PNG")
    lossless = decoded(png)
    for image_format, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        data = encode_overlay(picture, raw, "viridis", 0.5, image_format)
        assert data.startswith(magic) and len(data) < len(png)
        assert np.abs(decoded(data).astype(int) - lossless).mean() < 4, image_format


def test_base64_forms():
    data = bytes(range(256))
    text = base64.b64encode(data).decode()
    assert decode_base64_image(text) == data
    assert decode_base64_image("data:image/png;base64," + text) == data
    assert decode_base64_image(text.rstrip("=")) == data
    assert decode_base64_image(" \n".join(text[i : i + 10] for i in range(0, len(text), 10))) == data
    assert decode_base64_image(base64.urlsafe_b64encode(data).decode()) == data
    assert decode_base64_image("  DATA:image/png;BASE64," + text + "\n") == data  # the scheme is case-insensitive
    for bad in ("abc*def", "data:image/png,raw", "a", "abcde", "ab==cd", "====", "abc\u00e9", "YWJj\x00"):
        with pytest.raises(ValueError):
            decode_base64_image(bad)
