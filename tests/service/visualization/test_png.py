"""PNG encoding with numpy and Pillow."""

import io

import numpy as np
import torch
from PIL import Image

from service.visualization import encode_image_png


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_png_is_the_image():
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0)).numpy()
    png = encode_image_png(image)
    assert encode_image_png(image.copy()) == png
    decoded = decode(png)
    assert decoded.shape == (20, 30, 3)
    expected = (image.transpose(1, 2, 0) * 255).round()
    assert np.array_equal(decoded, expected.astype(np.uint8))
