"""GradientSHAP (Lundberg & Lee, 2017, "A Unified Approach to Interpreting Model Predictions"; expected gradients,
Erion et al. 2021; captum's GradientShap)."""

from dataclasses import dataclass

import numpy as np
import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need
from service.methods.deeplift_shap import baseline_distribution
from service.methods.passes import Steps


@dataclass(frozen=True)
class GradientShapOptions:
    samples: int = 25
    """Random (baseline, point on the path) samples."""
    noise: float = 0.0
    """Standard deviation of the Gaussian noise added to the input, as a fraction of its range (max - min)."""
    seed: int = 0
    """Seed of the baselines, the noise, the baseline choices and the path points."""


class GradientShap(MultiPassMethod):
    """phi_i = (1/n) sum_j (x~_j,i - b_j,i) * dS_c/dx_i(b_j + a_j (x~_j - b_j)): n samples of a baseline b_j
    drawn from the reference distribution (the same as deeplift_shap's), a point a_j ~ U(0, 1) on the path from
    it and the input x~_j = x + N(0, sigma^2); an estimate of the expected Integrated Gradients over baselines
    (captum's GradientShap: SmoothGrad over input x gradient at a random point). The map sums the colour channels.
    Signed; in expectation it sums to S_c(x) - E_b S_c(b) (noise 0).

    Draws as captum does, so that the same seed gives the same samples: the baselines, then the noise from a
    torch generator seeded by `seed`; the baseline choices, then the path points from numpy's RandomState(seed).
    """

    name = "gradient_shap"
    title = "GradientSHAP"
    paper = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (NeurIPS)"
    raw_map = (
        "sum over colour channels of the mean over `samples` random (baseline b, point a in [0, 1]) of "
        "(x + noise - b) * d logit_c / d input at b + a (x + noise - b); signed"
    )
    aliases = ("GradientShap", "gradshap", "grad_shap", "expected_gradients")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = GradientShapOptions
    cost = "`samples` forward + backward passes per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: GradientShapOptions, classes: int
    ) -> int:
        return options.samples * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            points, differences = sample_paths(image, options)
            gradients = yield from runner.input_gradients(points, class_index)
            maps.append((differences * gradients).mean(dim=0).sum(dim=0))
        return torch.stack(maps)


def sample_paths(image: torch.Tensor, options: GradientShapOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) -> the (n, 3, H, W) points b_j + a_j (x~_j - b_j) and differences x~_j - b_j."""
    count, device = options.samples, image.device
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    baselines = baseline_distribution(count, image.shape, generator, device)
    sigma = options.noise * float(image.max() - image.min())
    noisy = image + torch.randn((count, *image.shape), generator=generator).to(device) * sigma
    random = np.random.RandomState(options.seed)
    chosen = baselines[torch.from_numpy(random.choice(count, count)).to(device)]
    alphas = torch.tensor(random.uniform(0.0, 1.0, count), dtype=image.dtype, device=device)[:, None, None, None]
    return chosen + alphas * (noisy - chosen), noisy - chosen
