"""SS-CAM (Wang et al., 2020, "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization"): Score-CAM
whose channel scores are averaged over noisy copies of each mask, as torch-cam implements it."""

from dataclasses import dataclass

import torch

from service.methods.base import MethodInputs, MultiPassMethod, Need, weighted_sum
from service.methods.is_cam import score_masks
from service.methods.passes import Steps


@dataclass(frozen=True)
class SSCAMOptions:
    samples: int = 3
    """Noisy copies of the masks (torch-cam's default is 35: 44800 passes at the built-in model's default layer,
    above the service's cost bound; ask for more at a layer with fewer channels)."""
    sigma: float = 2.0
    """Standard deviation of the Gaussian noise added to the normalised masks (torch-cam's default)."""
    seed: int = 0
    """Seed of the noise, so that an answer is reproducible."""


class SSCAM(MultiPassMethod):
    """w^c = softmax_k((1/N) sum_i [Y_c((M_k + delta_i) ⊙ X) - Y_c(X)]),  delta_i ~ N(0, sigma^2) per pixel;
    L^c = ReLU(sum_k w_k^c A^k), M_k the normalised upsampled A^k (torch-cam's formulation: noise on the masks).

    The noise of each image comes from a generator seeded by `seed`, drawn as torch-cam draws it (one (C, H, W)
    tensor per sample, in order), so the same seed gives the same noise. One forward pass per channel and sample
    for each image, shared by its classes.
    """

    name = "ss_cam"
    title = "SS-CAM"
    paper = "Wang et al. 2020, SS-CAM: Smoothed Score-CAM (arXiv:2006.14255), as torch-cam 0.5.0"
    raw_map = (
        "ReLU(sum_k w_k A^k), w = softmax_k of the mean over noisy masks of logit_c((M_k + noise) * x) - logit_c(x)"
    )
    aliases = ("sscam", "SSCAM", "smoothed_score_cam")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    reads_layer_only = True
    options_type = SSCAMOptions
    cost = "the shared forward pass + `samples` forward passes per channel of the layer, per image"
    sanity_check = False

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: SSCAMOptions, classes: int) -> int:
        return options.samples * channels

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, C, h, w) activations, (N, 3, H, W) images -> (N, h, w)."""
        activations, runner, options = inputs.require("activations"), inputs.require("runner"), inputs.options
        weights = torch.empty(activations.shape[:2], device=activations.device)
        for rows in inputs.rows_by_image():
            first, classes = rows[0], inputs.classes[rows]
            masks = score_masks(activations[first], inputs.images.shape[-2:])  # (C, H, W)
            image = inputs.images[first][None]
            baseline = inputs.logits[first, classes][:, None]  # (r, 1)
            total = torch.zeros(len(rows), activations.shape[1], device=activations.device)
            generator = torch.Generator(device="cpu").manual_seed(options.seed)
            for _ in range(options.samples):
                noise = torch.randn(masks.shape, generator=generator).to(masks.device) * options.sigma
                logits = yield from runner.logits(image * (masks + noise)[:, None])  # (C, K)
                total += logits[:, classes].T - baseline
            weights[rows] = torch.softmax(total / options.samples, dim=1)
        return torch.relu(weighted_sum(weights, activations))
