"""Saliency (Simonyan et al., 2013, "Deep Inside Convolutional Networks: Visualising Image Classification
Models and Saliency Maps")."""

import torch

from service.methods.base import Method, MethodInputs, Need, max_abs_over_channels


class Saliency(Method):
    """M_ij = max_c |dS_c / dI_c,ij|  (Simonyan et al. sec. 3.1): the input gradient's magnitude."""

    name = "saliency"
    title = "Saliency (vanilla gradient)"
    paper = "Simonyan et al. 2013, Deep Inside Convolutional Networks (ICLR workshop 2014)"
    raw_map = "max over colour channels of |d logit_c / d input|, at the input resolution"
    aliases = ("Saliency", "vanilla_gradient", "gradient")
    needs = frozenset({Need.INPUT_GRADIENTS})
    cost = "the shared forward pass + a backward pass to the input"
    sanity_check = True
    input_resolution = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, 3, H, W) input gradients -> (N, H, W)."""
        return max_abs_over_channels(inputs.require("input_gradients"))
