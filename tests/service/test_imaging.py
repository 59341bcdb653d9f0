"""Decoding images: formats, modes, orientation and limits."""

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from service.imaging import decode_image, to_rgb
from tests.conftest import image_bytes
from tests.tiny_models import TINY_PREPROCESSING


def decode(data: bytes, max_pixels: int = 10**7, side: int = 512):
    return decode_image(data, TINY_PREPROCESSING, max_pixels, side)


def test_display_keeps_aspect_ratio_and_long_side_limit():
    decoded = decode(image_bytes(Image.new("RGB", (1000, 250), (200, 10, 10)), "PNG"))
    assert decoded.display.shape == (128, 512, 3) and decoded.size == (1000, 250)
    assert decoded.tensor.shape == (3, 32, 32)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode(image_bytes(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 60)


def test_sixteen_bit_is_scaled_not_clipped():
    gray = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # half of 65535
    assert to_rgb(gray).getpixel((0, 0)) == (128, 128, 128)


def test_transparency_is_composited_on_white():
    assert to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("LA", (2, 2), (0, 255))).getpixel((0, 0)) == (0, 0, 0)


def test_first_frame_of_an_animation_is_used():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert tuple(decode(buffer.getvalue()).display[0, 0]) == (255, 0, 0)


def test_refusals():
    with pytest.raises(UnsupportedMediaType):
        decode(b"%PDF-1.4 not an image")
    with pytest.raises(InvalidImage):
        decode(b"")
    with pytest.raises(PayloadTooLarge):
        decode(image_bytes(Image.new("L", (200, 200)), "PNG"), max_pixels=1000)
