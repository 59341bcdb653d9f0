"""Decoding posted image bytes into the model's input tensor and the picture the overlay is drawn on.

Runs in the CPU thread pool, with Pillow and numpy only. A JPEG larger than needed is decoded at a reduced
scale (libjpeg's DCT scaling, `Image.draft`: 1/2, 1/4 or 1/8) to the smallest size that still covers both the
model's input and the overlay picture, never smaller; a 12-megapixel photo then decodes about 10x faster. The
model's input and the overlay picture are two resizes of the decoded image (`open_rgb`, then
`Preprocessing.to_tensor` and `display_picture`), which the service runs side by side.

Every failure is a domain error with a 4xx status: formats outside the
allow-list are refused (415), images over the pixel limit are refused from their header, before their pixels
are allocated (413), and truncated or corrupt files are refused when their pixels are read (422). Pillow's
format plugins raise many exception types on corrupt data (`struct.error`, `TypeError`, ...; Pillow's own
fuzzers catch `Exception` for that reason), so any of them while parsing the file is a 422 too.
"""

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from model_store import Preprocessing
from service.core.errors import InvalidImage, InvalidParameter, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:  # the tensor is made by the model's preprocessing; this room runs no torch
    import torch

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
WHITE = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (as `PIL.ImageOps.exif_transpose`).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    """The model input (3, H, W) float tensor, the display picture (H', W', 3) uint8 (None when no overlay is
    drawn), and the upright size."""

    tensor: "torch.Tensor"
    display: np.ndarray | None
    size: tuple[int, int]  # (width, height) of the upright image as sent


def decode_image(data: bytes, preprocessing: Preprocessing, max_pixels: int, display_max_side: int) -> DecodedImage:
    """Bytes of an image file -> model input and display picture (long side at most `display_max_side`).
    Raises as `open_rgb`."""
    rgb, size = open_rgb(data, preprocessing, max_pixels, display_max_side)
    return DecodedImage(preprocessing.to_tensor(rgb, size), display_picture(rgb, display_max_side), size)


def open_rgb(
    data: bytes, preprocessing: Preprocessing, max_pixels: int, display_max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Bytes of an image file -> the upright RGB image, at the smallest JPEG scale that still covers the model's
    input and the display picture (long side `display_max_side`), and its upright size as sent. The scale does
    not depend on whether the picture is drawn: the same image gives the same logits with or without overlays.

    Raises:
        UnsupportedMediaType: not an image in an allowed format (code `unsupported_image`).
        PayloadTooLarge: more pixels than `max_pixels` (code `image_too_large`).
        InvalidImage: empty, truncated or corrupt file.
    """
    if not data:
        raise InvalidImage("the image is empty")
    height, width = preprocessing.input_size
    image, size = open_image(data, max_pixels, lambda upright: needed_size(upright, (width, height), display_max_side))
    return to_rgb(image), size


def decode_mask(data: bytes, image_size: tuple[int, int], input_size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """Bytes of a mask image -> (H, W) float32 of 0 and 1 at the model's input size (height, width), resized
    nearest-neighbour as the image is resized. A pixel is in the mask when it is not black: a nonzero grey level
    or colour channel, or a nonzero index of a palette image (a class mask); transparency is ignored.

    Raises:
        As `open_image`; InvalidImage: an empty file. InvalidParameter: a mask whose upright size is not the image's
        `image_size` (width, height), or that holds no pixel at the input size.
    """
    if not data:
        raise InvalidImage("the mask is empty")
    image, size = open_image(data, max_pixels)
    if size != image_size:
        raise InvalidParameter(
            f"the mask is {size[0]}x{size[1]} pixels; it must be the image's size, {image_size[0]}x{image_size[1]}"
        )
    if image.mode == "P":
        values = np.asarray(image)
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(to_8_bit_grey(image))
    else:
        values = np.asarray(image.convert("RGB")).max(axis=2)
    height, width = input_size
    inside = Image.fromarray((values > 0).astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    mask = np.asarray(inside, dtype=np.float32)
    if not mask.any():
        raise InvalidParameter(f"the mask holds no pixel at the model's input size ({width}x{height}); mark some")
    return mask


def display_picture(rgb: Image.Image, max_side: int) -> np.ndarray:
    """The picture overlays are drawn on: (H', W', 3) uint8, long side at most `max_side`, shrunk by area
    averaging (Pillow's BOX filter, in two thirds of the time of its bilinear one)."""
    display = rgb.copy()
    display.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(display, dtype=np.uint8)


def needed_size(upright: tuple[int, int], model_input: tuple[int, int], display_max_side: int) -> tuple[int, int]:
    """The smallest (width, height) that covers the model's input (width, height) and the display picture of an
    upright image of size `upright`."""
    width, height = upright
    scale = min(1.0, display_max_side / max(width, height))
    return max(model_input[0], round(width * scale)), max(model_input[1], round(height * scale))


def open_image(
    data: bytes, max_pixels: int, needed: Callable[[tuple[int, int]], tuple[int, int]] | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, size-check, load the first frame (a JPEG at the smallest scale that still covers `needed(size)`) and
    apply the EXIF orientation; returns the image and the upright (width, height) of the file as sent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image too large: {exc}", code="image_too_large") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"not a readable image; accepted formats: {', '.join(ALLOWED_FORMATS)}", code="unsupported_image"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # any plugin error on a corrupt header, see the module docstring
        raise InvalidImage(f"corrupt image header: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            code="image_too_large",
        )
    orientation = exif_orientation(image)
    transposed = orientation in (5, 6, 7, 8)
    size = (height, width) if transposed else (width, height)
    try:
        if needed is not None and image.format == "JPEG":
            need_width, need_height = needed(size)
            image.draft(None, (need_height, need_width) if transposed else (need_width, need_height))
        image.seek(0)
        image.load()
        return upright(image, orientation), size
    except MemoryError:
        raise
    except Exception as exc:  # any plugin error on corrupt data, see the module docstring
        raise InvalidImage(f"cannot decode image ({image.format}): {exc}") from exc


def exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1..8), if any. Only the tag is read: unlike `ImageOps.exif_transpose`, the rest
    of the metadata is not re-serialised, so a malformed tag the service does not need cannot fail the request."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION)
    except MemoryError:
        raise
    except Exception as exc:  # any plugin error on a corrupt header, see the module docstring
        raise InvalidImage(f"corrupt image metadata: {exc}") from exc
    return orientation if isinstance(orientation, int) and orientation in UPRIGHT else None


def upright(image: Image.Image, orientation: int | None) -> Image.Image:
    """Apply the EXIF orientation (`exif_orientation`)."""
    return image if orientation is None else image.transpose(UPRIGHT[orientation])


BAND_PIXELS = 1 << 20
"""Pixels converted at a time from 16-bit or float to 8 bits: the float64 scratch of a band is 8 MiB, whatever
the image's size (a 40-megapixel 16-bit PNG of 80 KB once took 1 GB of whole-image float64 temporaries)."""


def to_8_bit_grey(image: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit integer, or float, grey image -> 8-bit 'L': integers scaled by 1/257 (65535 -> 255),
    floats by 255 when they lie in [0, 1] and by 1/257 otherwise; NaN and infinities are 0; clipped to 0..255.
    A band of rows at a time, so that the peak beyond the image is its 8-bit copy and one band."""
    pixels = np.asarray(image)  # the image's own 2- or 4-byte values, no float copy
    height, width = pixels.shape
    rows = max(1, BAND_PIXELS // max(width, 1))
    bands = range(0, height, rows)  # the first row of each band
    scale = 1.0 / 257.0
    if image.mode == "F":
        finite = (np.where(np.isfinite(band), band, 0) for band in (pixels[top : top + rows] for top in bands))
        scale = 1.0 / 257.0 if max((float(f.max(initial=0)) for f in finite), default=0.0) > 1.0 else 255.0
    grey = np.empty((height, width), dtype=np.uint8)
    for top in bands:
        scratch = pixels[top : top + rows].astype(np.float64)
        np.nan_to_num(scratch, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        scratch *= scale
        np.clip(scratch, 0, 255, out=scratch)
        np.rint(scratch, out=scratch)
        grey[top : top + rows] = scratch
    return Image.fromarray(grey)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: 16-bit and float scaled (not clipped), alpha and transparent colours
    (`tRNS` of P, L and RGB images) composited on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = to_8_bit_grey(image)
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
