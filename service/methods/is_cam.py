"""IS-CAM (Naidu et al., 2020, "IS-CAM: Integrated Score-CAM for axiomatic-based explanations"): Score-CAM whose
channel scores are integrated along a path of growing mask intensity, as torch-cam implements it."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from service.methods.base import MethodInputs, MultiPassMethod, Need, weighted_sum
from service.methods.passes import Steps

EPS = 1e-8


@dataclass(frozen=True)
class ISCAMOptions:
    samples: int = 3
    """Steps of the path (torch-cam's default is 10: 12800 passes at the built-in model's default layer, above the
    service's cost bound; ask for it at a layer with fewer channels)."""


def score_masks(activation: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, H, W): each channel min-max normalised on its grid, then upsampled (bilinear, corners not
    aligned), as torch-cam's Score-CAM family prepares its masks."""
    flat = activation.flatten(1)
    low = flat.amin(dim=1)[:, None, None]
    normalised = (activation - low) / ((activation - low).flatten(1).amax(dim=1)[:, None, None] + EPS)
    return F.interpolate(normalised[None], size=size, mode="bilinear", align_corners=False)[0]


class ISCAM(MultiPassMethod):
    """w^c = softmax_k((1/N) sum_{i=1..N} [Y_c(a_i M_k ⊙ X) - Y_c(X)]),  a_i = sum_{j=1..i} j/N;
    L^c = ReLU(sum_k w_k^c A^k), M_k the normalised upsampled A^k.

    The coefficients a_i are torch-cam's (its code sums j/N for j = 1..i); its docstring and the paper's sum run
    from j = 0 to i - 1. We follow the code, the reference the maps are compared with. One forward pass per
    channel and step for each image, shared by its classes.
    """

    name = "is_cam"
    title = "IS-CAM"
    paper = "Naidu et al. 2020, IS-CAM: Integrated Score-CAM (arXiv:2010.03023), as torch-cam 0.5.0"
    raw_map = "ReLU(sum_k w_k A^k), w = softmax_k of the mean over the path of logit_c(a_i M_k * x) - logit_c(x)"
    aliases = ("iscam", "ISCAM", "integrated_score_cam")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    reads_layer_only = True
    options_type = ISCAMOptions
    cost = "the shared forward pass + `samples` forward passes per channel of the layer, per image"
    sanity_check = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: ISCAMOptions, classes: int) -> int:
        return options.samples * channels

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, C, h, w) activations, (N, 3, H, W) images -> (N, h, w)."""
        activations, runner, samples = inputs.require("activations"), inputs.require("runner"), inputs.options.samples
        weights = torch.empty(activations.shape[:2], device=activations.device)
        for rows in inputs.rows_by_image():
            first, classes = rows[0], inputs.classes[rows]
            masked = inputs.images[first][None] * score_masks(activations[first], inputs.images.shape[-2:])[:, None]
            baseline = inputs.logits[first, classes][:, None]  # (r, 1)
            total = torch.zeros(len(rows), activations.shape[1], device=activations.device)
            coefficient = 0.0
            for step in range(samples):
                coefficient += (step + 1) / samples
                logits = yield from runner.logits(coefficient * masked)  # (C, K)
                total += logits[:, classes].T - baseline
            weights[rows] = torch.softmax(total / samples, dim=1)
        return torch.relu(weighted_sum(weights, activations))
