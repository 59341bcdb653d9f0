"""PNG encoding of visualizations: numpy and Pillow only, for the CPU thread pool."""

import io

import numpy as np
from PIL import Image


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(3, h, w) float in [0, 1] -> (h, w, 3) uint8, rounded to the nearest level."""
    return np.ascontiguousarray((np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8).transpose(1, 2, 0))


def encode_image_png(image: np.ndarray) -> bytes:
    """(3, h, w) float in [0, 1] -> PNG bytes of an (h, w) RGB image; the same array gives the same bytes."""
    return _png(to_rgb_uint8(image))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
