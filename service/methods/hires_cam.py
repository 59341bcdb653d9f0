"""HiResCAM (Draelos & Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks")."""

import torch

from service.methods.base import Method, MethodInputs, Need


class HiResCAM(Method):
    """M^c = sum_k g^k ⊙ A^k: the gradient multiplied element-wise, not averaged first (eq. 3). Signed."""

    name = "hires_cam"
    title = "HiResCAM"
    paper = "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM (arXiv:2011.08891)"
    raw_map = "sum_k g^k * A^k, element-wise; signed, no ReLU"
    aliases = ("hirescam", "HiResCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w)."""
        return (inputs.require("gradients") * inputs.require("activations")).sum(dim=1)
