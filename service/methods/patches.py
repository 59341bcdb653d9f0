"""Interpretable features of an image for perturbation methods: a grid of square patches (superpixels that need
no segmentation library and are the same for every image of a size), and images with some patches filled."""

import torch


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
