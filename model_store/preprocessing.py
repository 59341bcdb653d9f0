"""Turning a decoded RGB image into the model's input tensor.

The whole image is kept: it is resized to the model's input size (aspect ratio not preserved) rather than
centre-cropped, so that the map covers every pixel the user sent and maps back onto it exactly.
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

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised float tensor (3, H, W) at the model's input size.

        Computed with Pillow and numpy (float32, the same operations and bits as in torch) and only wrapped as a
        tensor, so that it may run on any thread without starting a torch thread team there.
        """
        height, width = self.input_size
        resized = image.convert("RGB").resize((width, height), _PIL_RESAMPLE[self.interpolation])
        pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
        normalised = (pixels - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
