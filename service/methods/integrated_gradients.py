"""Integrated Gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep Networks")."""

from dataclasses import dataclass

import numpy as np
import torch

from service.methods.base import GRADIENT_PASS_COST, Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps


@dataclass(frozen=True)
class IntegratedGradientsOptions:
    steps: int = 32
    """Gauss-Legendre steps along the path."""
    baseline: Fill = "black"
    """The path's start, a black image or the normalisation mean (0 after normalising)."""


class IntegratedGradients(MultiPassMethod):
    """IG_i = (x_i - x'_i) * integral_0^1 dS/dx_i(x' + a (x - x')) da  (Sundararajan et al. eq. 1), the
    integral by Gauss-Legendre quadrature with `steps` points; the map sums the colour channels. Signed;
    the attributions sum to S(x) - S(x') (completeness).
    """

    name = "integrated_gradients"
    title = "Integrated Gradients"
    paper = "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks (ICML)"
    raw_map = "sum over colour channels of (x - baseline) * path-integrated input gradient; signed"
    aliases = ("IntegratedGradients", "ig", "integratedgradients")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = IntegratedGradientsOptions
    cost = "`steps` forward + backward passes per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: IntegratedGradientsOptions, classes: int
    ) -> int:
        return options.steps * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        points, weights = np.polynomial.legendre.leggauss(options.steps)
        device = inputs.images.device
        alphas = torch.tensor((points + 1) / 2, dtype=torch.float32, device=device)
        step_weights = torch.tensor(weights / 2, dtype=torch.float32, device=device)
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            baseline = (inputs.black if options.baseline == "black" else torch.zeros_like(inputs.black)).expand_as(
                image
            )
            path = baseline + alphas[:, None, None, None] * (image - baseline)
            gradients = yield from runner.input_gradients(path, class_index)  # (steps, 3, H, W)
            integral = (step_weights[:, None, None, None] * gradients).sum(dim=0)
            maps.append(((image - baseline) * integral).sum(dim=0))
        return torch.stack(maps)
