"""SmoothGrad (Smilkov et al., 2017, "SmoothGrad: removing noise by adding noise")."""

from dataclasses import dataclass
from typing import Literal

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, max_abs_over_channels
from service.methods.passes import Steps

NoiseTunnelType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]


@dataclass(frozen=True)
class SmoothGradOptions:
    samples: int = 25
    """Noisy samples."""
    noise: float = 0.15
    """Noise standard deviation as a fraction of the input's range (max - min)."""
    seed: int = 0
    """Seed of the noise, so that a request's answer is reproducible."""
    nt_type: NoiseTunnelType = "smoothgrad"
    """How the samples are pooled (captum's NoiseTunnel types): their mean, the mean of their squares, or their
    variance."""


class SmoothGrad(MultiPassMethod):
    """M = max_c (1/n) sum_i |dS_c/dI (I + N(0, sigma^2))|, sigma = noise * (max I - min I)  (Smilkov et al.
    eq. 3, on the saliency map of Simonyan et al.). The noise comes from a generator seeded by `seed`, so an
    answer does not depend on its batch companions.

    `nt_type` pools the samples g_i = |dS_c/dI (I + noise_i)| as captum's NoiseTunnel does, before the max over
    colour channels: `smoothgrad` (1/n) sum g_i; `smoothgrad_sq` (1/n) sum g_i^2 (SmoothGrad-Squared, Hooker et
    al. 2019); `vargrad` (1/n) sum g_i^2 - ((1/n) sum g_i)^2, the variance (VarGrad, Adebayo et al. 2018).
    """

    name = "smoothgrad"
    title = "SmoothGrad"
    paper = "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise (arXiv:1706.03825)"
    raw_map = (
        "max over colour channels of the mean |input gradient| over `samples` noisy copies (`nt_type=smoothgrad`), "
        "of the mean squared |input gradient| (`smoothgrad_sq`) or of its variance (`vargrad`)"
    )
    aliases = ("SmoothGrad", "smooth_grad", "noise_tunnel")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = SmoothGradOptions
    cost = "`samples` forward + backward passes per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: SmoothGradOptions, classes: int) -> int:
        return options.samples * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            generator = torch.Generator(device="cpu").manual_seed(options.seed)
            sigma = options.noise * float(image.max() - image.min())
            noise = torch.randn((options.samples, *image.shape), generator=generator).to(image.device) * sigma
            gradients = yield from runner.input_gradients(image[None] + noise, class_index)
            maps.append(max_abs_over_channels(pool_samples(gradients.abs(), options.nt_type)[None])[0])
        return torch.stack(maps)


def pool_samples(samples: torch.Tensor, nt_type: NoiseTunnelType) -> torch.Tensor:
    """(n, ...) attributions of the noisy samples -> (...) by the NoiseTunnel type (captum's `_compute_smoothing`)."""
    mean = samples.mean(dim=0)
    if nt_type == "smoothgrad":
        return mean
    mean_of_squares = samples.pow(2).mean(dim=0)
    return mean_of_squares if nt_type == "smoothgrad_sq" else mean_of_squares - mean * mean
