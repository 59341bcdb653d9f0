"""DeepLIFT (Shrikumar et al., 2017, "Learning Important Features Through Propagating Activation Differences")."""

from dataclasses import dataclass

import torch

from service.methods.base import GRADIENT_PASS_COST, Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps


@dataclass(frozen=True)
class DeepLiftOptions:
    baseline: Fill = "black"
    """The reference input x', a black image or the normalisation mean (0 after normalising)."""


def reference_of(inputs: MethodInputs, baseline: Fill) -> torch.Tensor:
    """(3, 1, 1): the normalised value of the reference input's pixels."""
    return inputs.black if baseline == "black" else torch.zeros_like(inputs.black)


class DeepLift(MultiPassMethod):
    """C_i = (x_i - x'_i) * m_i, m the input multipliers of the class logit by the Rescale rule (Shrikumar et
    al. sec. 3.5.1: each nonlinearity passes back (f(x) - f(x')) / (x - x'); linear layers their weights); the
    map sums the colour channels. Signed; summation-to-delta: the map sums to S_c(x) - S_c(x') (eq. 1). Max
    pooling keeps its gradient, as in DeepLIFT's implementation; captum has a rule of its own there.
    """

    name = "deeplift"
    title = "DeepLIFT (Rescale rule)"
    paper = "Shrikumar et al. 2017, Learning Important Features Through Propagating Activation Differences (ICML)"
    raw_map = "sum over colour channels of (x - baseline) * Rescale-rule multipliers of logit_c; signed"
    aliases = ("DeepLift", "deep_lift", "DeepLIFT")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = DeepLiftOptions
    cost = "one forward + backward pass of 2 images (input and reference) per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: DeepLiftOptions, classes: int) -> int:
        return 2 * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner = inputs.require("runner")
        reference = reference_of(inputs, inputs.options.baseline)
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            references = reference.expand_as(image)[None]
            multipliers = yield from runner.rescale_gradients(image[None], references, class_index)
            maps.append(((image - references[0]) * multipliers[0]).sum(dim=0))
        return torch.stack(maps)
