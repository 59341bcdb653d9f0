"""Maps to pictures and text: normalisation, colormaps, overlays and base64."""

import base64
import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from service.encoding import colormap_table, decode_base64_image, encode_overlay_png, normalize_map


def test_normalize_map_relu_min_max_and_degenerate_cases():
    torch.testing.assert_close(
        normalize_map(torch.tensor([[-1.0, 0.0], [1.0, 3.0]])), torch.tensor([[0.0, 0.0], [1 / 3, 1.0]])
    )
    for degenerate in (torch.zeros(3, 3), torch.full((3, 3), 5.0), torch.full((3, 3), float("nan"))):
        assert torch.equal(normalize_map(degenerate), torch.zeros(3, 3))


@pytest.mark.parametrize("name", ["jet", "viridis", "inferno", "turbo"])
def test_colormap_tables_match_matplotlib(name):
    expected = (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    assert np.array_equal(colormap_table(name).numpy(), expected)


def test_overlay_blends_the_map_on_the_whole_picture():
    picture = np.zeros((30, 50, 3), dtype=np.uint8)
    raw = torch.zeros(7, 7)
    raw[0, 0] = 1.0
    png = encode_overlay_png(picture, raw, "jet", alpha=1.0)
    overlay = np.asarray(Image.open(io.BytesIO(png)))
    assert overlay.shape == (30, 50, 3)
    assert tuple(overlay[0, 0]) == tuple(colormap_table("jet")[255].tolist())  # hottest corner
    assert tuple(overlay[-1, -1]) == tuple(colormap_table("jet")[0].tolist())
    half = np.asarray(Image.open(io.BytesIO(encode_overlay_png(picture, raw, "jet", alpha=0.5))))
    assert abs(int(half[-1, -1, 2]) - colormap_table("jet")[0, 2].item() // 2) <= 1


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
