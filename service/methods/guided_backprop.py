"""Guided backpropagation (Springenberg et al., 2014, "Striving for Simplicity: The All Convolutional Net")."""

import torch

from service.methods.base import Method, MethodInputs, Need, max_abs_over_channels


class GuidedBackprop(Method):
    """The input gradient with each rectifier's backward rule replaced by
    R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}  (Springenberg et al. fig. 1): only positive gradients through
    positive activations. Applies to the model's nn.ReLU and nn.ReLU6 modules, in a pass of its own.
    """

    name = "guided_backprop"
    title = "Guided Backpropagation"
    paper = "Springenberg et al. 2014, Striving for Simplicity: The All Convolutional Net (ICLR workshop 2015)"
    raw_map = "max over colour channels of |guided gradient|, at the input resolution"
    aliases = ("guidedbackprop", "GuidedBackprop", "guided_backpropagation")
    needs = frozenset({Need.GUIDED_GRADIENTS})
    cost = "one forward + backward pass of its own (shared with guided_grad_cam)"
    sanity_check = False
    input_resolution = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, 3, H, W) guided gradients -> (N, H, W)."""
        return max_abs_over_channels(inputs.require("guided_gradients"))
