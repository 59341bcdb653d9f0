"""How a layer's output becomes a (B, C, h, w) feature grid, and back: token and channels-last layers.

Every layer method reads a (B, C, h, w) grid. Convolutional layers give one already. Vision transformers give
tokens, (B, p + h*w, C) with p prefix tokens (the class token, DeiT's distillation token); Swin's blocks give
channels-last maps, (B, h, w, C). pytorch-grad-cam serves these through a `reshape_transform` (tokens -> grid,
prefix tokens dropped; channels-last -> channels-first); here the hooks apply the same reshape, both ways, so
that a method sees a grid, and what it returns in place of the grid (a leaf that gradients stop at, an ablated
grid) flows on through the model with the prefix tokens the layer gave.

A layer whose output is a mapping of feature maps (a detector's FPN: its levels by name) is seen as one grid
the way pytorch-grad-cam's `fasterrcnn_reshape_transform` sees it: each level's absolute value resized
(bilinear) to the smallest level's size, concatenated along the channels. That grid is read only: it cannot go
back into the levels, so the gradient at such a layer is not defined, and only methods that read activations
apply there (`levels_grid`).

Layouts a manifest may name (`reshape`), or that are inferred for timm's families when it is silent:
- "vit": 3-D outputs (B, p + h*w, C) with `prefix_tokens` = p (timm's `num_prefix_tokens`);
- "channels_last": 4-D outputs (B, h, w, C) of any module but a convolution, and 3-D token outputs without
  prefix tokens (B, h*w, C), as inside Swin's blocks;
- "none": only (B, C, h, w) outputs are feature grids.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Layout = Literal["tokens", "channels_last", "levels"]
RESHAPES = ("vit", "channels_last", "none")


@dataclass(frozen=True)
class LayerGrid:
    """The reshape of one layer's output to a (B, C, h, w) grid: `tokens` (with `prefix` tokens before the
    h x w patch tokens, row-major), `channels_last`, or `levels` (a mapping of feature maps, read only)."""

    layout: Layout
    size: tuple[int, int]
    prefix: int = 0

    def to_grid(self, output: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, p + h*w, C) tokens or (B, h, w, C) -> (B, C, h, w); prefix tokens dropped. Levels {name: (B, C_i,
        h_i, w_i)} -> (B, sum C_i, h, w) at the smallest level's size (h, w), of their absolute values."""
        if isinstance(output, Mapping):
            return torch.cat(
                [F.interpolate(level.abs(), self.size, mode="bilinear") for level in output.values()], dim=1
            )
        if self.layout == "channels_last":
            return output.permute(0, 3, 1, 2)
        patches = output[:, self.prefix :]
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], *self.size)

    def from_grid(self, grid: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """(B', C, h, w) -> the layer's own layout; prefix tokens from `output` (B, ...) (its first row when
        B' differs from B, as for the copies of one image in an ablation). Levels do not go back: TypeError."""
        if self.layout == "levels":
            raise TypeError("a grid of several feature levels cannot replace them")
        if self.layout == "channels_last":
            return grid.permute(0, 2, 3, 1)
        patches = grid.flatten(2).transpose(1, 2)
        if self.prefix == 0:
            return patches
        prefix = output[:, : self.prefix]
        if prefix.shape[0] != patches.shape[0]:
            prefix = prefix[:1].expand(patches.shape[0], *prefix.shape[1:])
        return torch.cat([prefix, patches], dim=1)


def token_grid_size(tokens: int, input_size: tuple[int, int]) -> tuple[int, int] | None:
    """The (h, w) patch grid of `tokens` patch tokens for an input of `input_size` (H, W), or None."""
    height, width = input_size
    h = round(math.sqrt(tokens * height / width))
    if h < 1 or tokens % h:
        return None
    w = tokens // h
    return (h, w) if h * w == tokens and h * w > 1 else None


def layer_grid(
    reshape: str, prefix_tokens: int, module: nn.Module, output: torch.Tensor, batch: int, input_size: tuple[int, int]
) -> LayerGrid | None:
    """The grid of a layer's output (B, ...) under the model's `reshape`, or None when it has none."""
    if reshape == "none" or output.shape[0] != batch:
        return None
    if reshape == "channels_last" and output.ndim == 4 and not isinstance(module, nn.Conv2d):
        return LayerGrid("channels_last", (output.shape[1], output.shape[2]))
    prefix = prefix_tokens if reshape == "vit" else 0
    if output.ndim == 3 and output.shape[1] > prefix:
        size = token_grid_size(output.shape[1] - prefix, input_size)
        if size is not None:
            return LayerGrid("tokens", size, prefix)
    return None


def levels_grid(output: object, batch: int) -> LayerGrid | None:
    """The grid of a layer whose output maps names to two or more (B, C, h, w) feature maps, or None."""
    if not isinstance(output, Mapping) or len(output) < 2:
        return None
    levels = list(output.values())
    if not all(isinstance(level, torch.Tensor) and level.ndim == 4 and level.shape[0] == batch for level in levels):
        return None
    smallest = min(levels, key=lambda level: level.shape[-1] * level.shape[-2])
    return LayerGrid("levels", (smallest.shape[-2], smallest.shape[-1]))


def inferred_reshape(module: nn.Module) -> tuple[str, int]:
    """(reshape, prefix tokens) of timm's ViT/DeiT (tokens) and Swin (channels-last) families; ("none", 0) else."""
    try:
        from timm.models.swin_transformer import SwinTransformer
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:  # timm is a dependency, but a store of torchvision models does not need it
        return "none", 0
    if isinstance(module, VisionTransformer):
        return "vit", int(module.num_prefix_tokens)
    if isinstance(module, SwinTransformer):
        return "channels_last", 0
    return "none", 0
