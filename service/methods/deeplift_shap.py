"""DeepLIFT SHAP (Lundberg & Lee, 2017, "A Unified Approach to Interpreting Model Predictions", sec. 4.2; captum's
DeepLiftShap)."""

from dataclasses import dataclass

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps


@dataclass(frozen=True)
class DeepLiftShapOptions:
    samples: int = 16
    """Baselines drawn from the reference distribution."""
    seed: int = 0
    """Seed of the baselines, so that a request's answer is reproducible."""


def baseline_distribution(
    count: int, shape: torch.Size, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(count, *shape) baselines: standard normal after normalisation, i.e. pixels drawn from a normal with the
    model's normalisation mean and std per channel (the "Gaussian" baseline of Sturmfels et al. 2020, Visualizing
    the Impact of Feature Attribution Baselines), the next draws of `generator`."""
    return torch.randn((count, *shape), generator=generator).to(device)


class DeepLiftShap(MultiPassMethod):
    """phi_i = (1/n) sum_j (x_i - b_j,i) * m_i(x, b_j): DeepLIFT (Rescale rule) against each of n baselines b_j
    drawn from the reference distribution, averaged (Lundberg & Lee sec. 4.2, as captum's DeepLiftShap); the
    map sums the colour channels. Signed; sums to S_c(x) - (1/n) sum_j S_c(b_j).
    """

    name = "deeplift_shap"
    title = "DeepLIFT SHAP"
    paper = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (NeurIPS), sec. 4.2"
    raw_map = (
        "sum over colour channels of the mean over `samples` baselines b (standard normal after normalising, "
        "seeded) of (x - b) * Rescale-rule multipliers of logit_c; signed"
    )
    aliases = ("DeepLiftShap", "deep_lift_shap", "deepshap", "deep_shap")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = DeepLiftShapOptions
    cost = "`samples` forward + backward passes of 2 images (input and baseline) per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: DeepLiftShapOptions, classes: int
    ) -> int:
        return 2 * options.samples * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            generator = torch.Generator(device="cpu").manual_seed(options.seed)
            baselines = baseline_distribution(options.samples, image.shape, generator, image.device)
            repeated = image.expand_as(baselines)
            multipliers = yield from runner.rescale_gradients(repeated, baselines, class_index)
            maps.append(((repeated - baselines) * multipliers).mean(dim=0).sum(dim=0))
        return torch.stack(maps)
