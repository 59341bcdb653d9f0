"""SmoothGrad (Smilkov et al., 2017, "SmoothGrad: removing noise by adding noise")."""

from dataclasses import dataclass

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, max_abs_over_channels
from service.passes import Steps


@dataclass(frozen=True)
class SmoothGradOptions:
    samples: int = 25
    """Noisy samples."""
    noise: float = 0.15
    """Noise standard deviation as a fraction of the input's range (max - min)."""
    seed: int = 0
    """Seed of the noise, so that a request's answer is reproducible."""


class SmoothGrad(MultiPassMethod):
    """M = max_c (1/n) sum_i |dS_c/dI (I + N(0, sigma^2))|, sigma = noise * (max I - min I)  (Smilkov et al.
    eq. 3, on the saliency map of Simonyan et al.). The noise comes from a generator seeded by `seed`, so an
    answer does not depend on its batch companions.
    """

    name = "smoothgrad"
    title = "SmoothGrad"
    paper = "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise (arXiv:1706.03825)"
    raw_map = "max over colour channels of the mean |input gradient| over `samples` noisy copies"
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
            maps.append(max_abs_over_channels(gradients.abs().mean(dim=0, keepdim=True))[0])
        return torch.stack(maps)
