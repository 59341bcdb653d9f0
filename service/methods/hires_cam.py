"""HiResCAM (Draelos & Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks")."""

import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod


class HiResCAM(ChannelMapMethod):
    """M^c = sum_k g^k ⊙ A^k: the gradient multiplied element-wise, not averaged first (eq. 3). Signed."""

    name = "hires_cam"
    title = "HiResCAM"
    paper = "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM (arXiv:2011.08891)"
    raw_map = "sum_k g^k * A^k, element-wise; signed, no ReLU"
    aliases = ("hirescam", "HiResCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = True

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """g^k A^k: (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        return inputs.require("gradients") * inputs.require("activations")

    def reduce(self, weighted: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w): the signed sum over channels."""
        return weighted.sum(dim=1)
