"""Turning a decoded RGB image into the model's input tensor.

The whole image is kept: it is resized to the model's input size (aspect ratio not preserved) rather than
centre-cropped, so that the map covers every pixel the user sent and maps back onto it exactly. A detector's
input is letterboxed instead (`letterbox_fill`): the image keeps its aspect ratio, scaled to fit the input size
and padded at the right and bottom, as detectors expect; its maps and boxes are read on the image's part only
(`image_extent`).
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_PIL_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    letterbox_fill: tuple[float, float, float] | None = None
    """With a colour (RGB in [0, 1]), the image keeps its aspect ratio and the rest of the input is this colour;
    without, the image is stretched to the input size."""

    def to_tensor(self, image: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor (3, H, W) at the model's input size. `size` is the (width,
        height) of the image as sent, when `image` is a reduced copy of it (a JPEG decoded at a smaller scale):
        the letterbox is placed by the size as sent, as the answer's boxes and maps are read.

        Computed with Pillow and numpy (float32, the same operations and bits as in torch) and only wrapped as a
        tensor, so that it may run on any thread without starting a torch thread team there.
        """
        height, width = self.input_size
        content = self.content_size(size or image.size)
        resized = image.convert("RGB").resize(content, _PIL_RESAMPLE[self.interpolation])
        pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
        if self.letterbox_fill is not None:
            canvas = np.empty((height, width, 3), dtype=np.float32)
            canvas[...] = np.asarray(self.letterbox_fill, dtype=np.float32)
            canvas[: content[1], : content[0]] = pixels
            pixels = canvas
        normalised = (pixels - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))

    def content_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) in the input's pixels of an image of (width, height) `image_size`."""
        height, width = self.input_size
        if self.letterbox_fill is None:
            return width, height
        scale = min(width / image_size[0], height / image_size[1])
        return (
            min(width, max(1, round(image_size[0] * scale))),
            min(height, max(1, round(image_size[1] * scale))),
        )

    def image_extent(self, image_size: tuple[int, int]) -> tuple[float, float]:
        """The fraction (of the height, of the width) of the input that an image of `image_size` covers: 1 and 1
        unless letterboxed."""
        content_width, content_height = self.content_size(image_size)
        height, width = self.input_size
        return content_height / height, content_width / width
