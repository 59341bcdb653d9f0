"""Deconvnet (Zeiler & Fergus, 2014, "Visualizing and Understanding Convolutional Networks")."""

import torch

from service.methods.base import Method, MethodInputs, Need, max_abs_over_channels


class Deconvnet(Method):
    """The input gradient with each rectifier's backward rule replaced by R_l = (R_{l+1} > 0) * R_{l+1}:
    the deconvnet's ReLU on the backward signal, ignoring the forward activation (Zeiler & Fergus sec. 2.1).
    Applies to the model's nn.ReLU and nn.ReLU6 modules, in a pass of its own.
    """

    name = "deconvnet"
    title = "Deconvnet"
    paper = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks (ECCV)"
    raw_map = "max over colour channels of |deconvnet signal|, at the input resolution"
    aliases = ("deconvolution", "Deconvolution", "deconv")
    needs = frozenset({Need.DECONV_GRADIENTS})
    cost = "one forward + backward pass of its own"
    sanity_check = False
    input_resolution = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, 3, H, W) deconvnet gradients -> (N, H, W)."""
        return max_abs_over_channels(inputs.require("deconv_gradients"))
