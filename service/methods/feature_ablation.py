"""Feature ablation on patches (captum's FeatureAblation; the perturbation analysis of Zeiler & Fergus 2014, one
feature at a time)."""

from dataclasses import dataclass

import torch

from service.methods.base import Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps
from service.methods.patches import PatchGrid, patch_count


@dataclass(frozen=True)
class FeatureAblationOptions:
    window: int = 32
    """Side of the square patches the image is cut into, in input pixels."""
    fill: Fill = "mean"
    """What an ablated patch is filled with."""


class FeatureAblation(MultiPassMethod):
    """M_ij = S_c(x) - S_c(x with the patch P(i, j) filled): the image is cut into a grid of `window` x `window`
    patches (the features), each ablated alone; every pixel of a patch gets its drop of the class logit (as
    captum's FeatureAblation with a feature mask of patches). One forward pass per patch and image, shared by its
    classes. Unlike occlusion, the patches do not overlap.
    """

    name = "feature_ablation"
    title = "Feature ablation (patches)"
    paper = "captum FeatureAblation (Kokhlikyan et al. 2020); Zeiler & Fergus 2014, sec. 4.2"
    raw_map = "drop of logit_c when the pixel's `window` x `window` patch is filled, on a grid of patches; signed"
    aliases = ("FeatureAblation",)
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = FeatureAblationOptions
    cost = "one forward pass per patch, per image"
    sanity_check = True
    input_resolution = True

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: FeatureAblationOptions, classes: int
    ) -> int:
        return patch_count(input_size, options.window)

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, grid = inputs.require("runner"), PatchGrid.of(inputs)
        ablations = 1 - torch.eye(grid.count)  # row p: every patch kept but p
        maps = torch.zeros(len(inputs.classes), *inputs.images.shape[-2:], device=inputs.images.device)
        for rows in inputs.rows_by_image():
            logits = yield from grid.logits(runner, inputs.images[rows[0]], ablations)  # (M, K)
            classes = inputs.classes[rows]
            drops = inputs.logits[rows[0], classes][None] - logits[:, classes]  # (M, r)
            maps[rows] = grid.painted(drops.T, maps)
        return maps
