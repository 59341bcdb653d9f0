"""Random transformations applied before every step, so that the optimum is a feature, not adversarial noise.

Lucid's `standard_transforms` (Olah et al. 2017, section "The Enemy of Feature Visualization: transformation
robustness"; lucent's `transform.py`), in this order:

    pad 12 px with grey (0.5), jitter 0..7 px, scale by one of 1 + (i - 5) / 50 for i in 0..10,
    rotate by one of -10..10 degrees (0 weighted 6 times, as lucent), jitter 0..3 px.

Each image of a batch draws its own transformation from its own `torch.Generator`, so a visualization's draws do
not depend on its companions. The jitters, scaling and rotation of one image are composed into a single affine
map and resampled once (bilinear, zeros outside), on the padded canvas, which keeps its size; the canvas is then
resized to the model's input size and normalised, as a posted image is.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model_store import Preprocessing

PAD = 12
PAD_VALUE = 0.5
JITTER_FIRST = 8
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
ANGLES = tuple(range(-10, 11)) + (0,) * 5
JITTER_LAST = 4


@dataclass(frozen=True)
class TransformDraw:
    """One image's random transformation: shifts in pixels (x, y), a scale factor, an angle in degrees."""

    first_shift: tuple[int, int]
    scale: float
    angle: float
    last_shift: tuple[int, int]


def draw_transform(generator: torch.Generator) -> TransformDraw:
    """Five draws from `generator`, always in the same order."""

    def pick(choices: Sequence[float] | range) -> float:
        return choices[int(torch.randint(len(choices), (), generator=generator))]

    first = (int(pick(range(JITTER_FIRST))), int(pick(range(JITTER_FIRST))))
    scale = float(pick(SCALES))
    angle = float(pick(ANGLES))
    last = (int(pick(range(JITTER_LAST))), int(pick(range(JITTER_LAST))))
    return TransformDraw(first, scale, angle, last)


def affine_theta(draw: TransformDraw, height: int, width: int) -> torch.Tensor:
    """The (2, 3) `affine_grid` matrix that samples the transformed image from the original.

    In pixels about the canvas centre (x right, y down) the transformation is p_out = R S (p_in + t1) + t2, with
    R turning counter-clockwise on screen by the angle (as kornia's `rotate`), so each output pixel reads
    p_in = S^-1 R^-1 (p_out - t2) - t1; `affine_grid` works in coordinates normalised by (w / 2, h / 2).
    """
    cos, sin = math.cos(math.radians(draw.angle)), math.sin(math.radians(draw.angle))
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) / draw.scale  # S^-1 R^-1
    first = torch.tensor(draw.first_shift, dtype=torch.float64)
    last = torch.tensor(draw.last_shift, dtype=torch.float64)
    linear = inverse * half[None, :] / half[:, None]  # D^-1 S^-1 R^-1 D
    offset = -(inverse @ last + first) / half
    return torch.cat([linear, offset[:, None]], dim=1).float()


def transform_batch(images: torch.Tensor, draws: Sequence[TransformDraw]) -> torch.Tensor:
    """Pad, then jitter, scale, rotate and jitter each image by its own draw.

    Args:
        images: (B, 3, h, w) RGB in [0, 1].
        draws: B transformations.

    Returns:
        (B, 3, h + 2 * PAD, w + 2 * PAD).
    """
    padded = F.pad(images, [PAD] * 4, value=PAD_VALUE)
    height, width = padded.shape[-2:]
    theta = torch.stack([affine_theta(draw, height, width) for draw in draws]).to(images.device)
    grid = F.affine_grid(theta, list(padded.shape), align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_model_input(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Resize to the model's input size with its interpolation (antialiased), then normalise.

    (B, 3, h, w) RGB in [0, 1] -> (B, 3, H, W).
    """
    if tuple(images.shape[-2:]) != preprocessing.input_size:
        mode = preprocessing.interpolation
        images = F.interpolate(
            images,
            size=preprocessing.input_size,
            mode=mode,
            **({} if mode == "nearest" else {"align_corners": False, "antialias": True}),
        )
    mean = torch.tensor(preprocessing.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
