"""Occlusion sensitivity (Zeiler & Fergus, 2014, "Visualizing and Understanding Convolutional Networks", sec. 4.2)."""

from dataclasses import dataclass

import torch

from service.methods.base import Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Top-left offsets of the patches along one side (as captum's Occlusion: no padding)."""
    return list(range(0, max(size - window, 0) + 1, stride))


@dataclass(frozen=True)
class OcclusionOptions:
    window: int = 32
    """Side of the square patch, in input pixels."""
    stride: int = 16
    """Step between patches, in input pixels."""
    fill: Fill = "mean"
    """What the patch is filled with."""


class Occlusion(MultiPassMethod):
    """M_ij = mean over the patches P covering (i, j) of S_c(x) - S_c(x with P filled): the drop of the class
    logit when a `window` x `window` patch, moved by `stride`, is hidden (filled with black or the mean).
    One forward pass per patch position and image, shared by its classes.
    """

    name = "occlusion"
    title = "Occlusion"
    paper = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks (ECCV), sec. 4.2"
    raw_map = "mean drop of logit_c over the patches covering each pixel; signed"
    aliases = ("Occlusion", "occlusion_sensitivity")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = OcclusionOptions
    cost = "one forward pass per patch position, per image"
    sanity_check = True
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: OcclusionOptions, classes: int) -> int:
        height, width = input_size
        return len(window_starts(height, options.window, options.stride)) * len(
            window_starts(width, options.window, options.stride)
        )

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        height, width = inputs.images.shape[-2:]
        patches = [
            (top, left)
            for top in window_starts(height, options.window, options.stride)
            for left in window_starts(width, options.window, options.stride)
        ]
        fill = inputs.black if options.fill == "black" else torch.zeros_like(inputs.black)
        maps = torch.zeros(len(inputs.classes), height, width, device=inputs.images.device)
        for rows in inputs.rows_by_image():
            image = inputs.images[rows[0]]
            occluded = image.expand(len(patches), *image.shape).clone()
            masks = torch.zeros(len(patches), height, width, device=image.device)
            for p, (top, left) in enumerate(patches):
                occluded[p, :, top : top + options.window, left : left + options.window] = fill
                masks[p, top : top + options.window, left : left + options.window] = 1
            covered = masks.sum(dim=0)
            logits = yield from runner.logits(occluded)  # (P, K)
            drops = inputs.logits[rows[0], inputs.classes[rows]][None] - logits[:, inputs.classes[rows]]  # (P, r)
            total = torch.einsum("pr,phw->rhw", drops, masks)
            maps[rows] = torch.where(covered > 0, total / covered.clamp(min=1), torch.zeros_like(total))
        return maps
