"""Gradient x Input (Shrikumar et al., 2016, "Not Just a Black Box: Learning Important Features Through
Propagating Activation Differences")."""

import torch

from service.methods.base import Method, MethodInputs, Need


class GradientXInput(Method):
    """M_ij = sum_c I_c,ij * dS_c/dI_c,ij: the first-order Taylor contribution of each pixel. Signed."""

    name = "gradient_x_input"
    title = "Gradient x Input"
    paper = "Shrikumar et al. 2016, Not Just a Black Box (arXiv:1605.01713)"
    raw_map = "sum over colour channels of input * d logit_c / d input (normalised input), signed"
    aliases = ("input_x_gradient", "InputXGradient", "gradientxinput", "grad_x_input")
    needs = frozenset({Need.INPUT_GRADIENTS})
    cost = "the shared forward pass + a backward pass to the input"
    sanity_check = True
    input_resolution = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, 3, H, W) images and input gradients -> (N, H, W)."""
        return (inputs.images * inputs.require("input_gradients")).sum(dim=1)
