"""Interpretable features of an image for perturbation methods: a grid of square patches (superpixels that need
no segmentation library and are the same for every image of a size), and images with some patches filled."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from service.methods.passes import Steps

if TYPE_CHECKING:
    from service.methods.base import MethodInputs
    from service.methods.passes import PassRunner


def patch_mask(height: int, width: int, window: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(H, W) feature index of each pixel, row-major over `window` x `window` patches (the last row and column
    of patches are narrower when `window` does not divide the side), and the number of patches M."""
    columns = -(-width // window)
    rows = torch.arange(height, device=device) // window
    cols = torch.arange(width, device=device) // window
    return rows[:, None] * columns + cols[None, :], int(-(-height // window) * columns)


def patch_count(input_size: tuple[int, int], window: int) -> int:
    height, width = input_size
    return -(-height // window) * -(-width // window)


def with_patches_kept(image: torch.Tensor, mask: torch.Tensor, kept: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image, (H, W) feature mask, (n, M) binary samples (1: the patch is kept) and (3, 1, 1) fill
    -> (n, 3, H, W) images whose dropped patches are filled."""
    keep = kept.to(image.dtype)[:, mask][:, None]  # (n, 1, H, W)
    return image * keep + fill * (1 - keep)


@dataclass(frozen=True)
class PatchGrid:
    """The patches of the images of a group of targets, and what a dropped patch is filled with."""

    mask: torch.Tensor
    """(H, W) feature index of each pixel."""
    count: int
    """The number of patches M."""
    fill: torch.Tensor
    """(3, 1, 1) the normalised fill."""

    @classmethod
    def of(cls, inputs: "MethodInputs") -> "PatchGrid":
        """The grid of `inputs.options.window`-pixel patches filled with `inputs.options.fill`."""
        height, width = inputs.images.shape[-2:]
        mask, count = patch_mask(height, width, inputs.options.window, inputs.images.device)
        fill = inputs.black if inputs.options.fill == "black" else torch.zeros_like(inputs.black)
        return cls(mask, count, fill)

    def logits(self, runner: "PassRunner", image: torch.Tensor, kept: torch.Tensor) -> Steps[torch.Tensor]:
        """(n, K) logits of the (3, H, W) image with the patches of each (n, M) binary sample kept and the others
        filled, a chunk of images at a time."""
        on_device = kept.to(self.mask.device)
        return (
            yield from runner.logits_of(
                len(kept),
                lambda rows: with_patches_kept(image, self.mask, on_device[rows.to(self.mask.device)], self.fill),
            )
        )

    def painted(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(r, M) values of the patches -> (r, H, W) maps, in the dtype and on the device of `like`."""
        return values.to(like.device, like.dtype)[:, self.mask]
