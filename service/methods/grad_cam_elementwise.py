"""Grad-CAM element-wise (pytorch-grad-cam's `GradCAMElementWise`, Gildenblat et al. 2021): Grad-CAM with the
gradient applied per position before the ReLU, so that negative evidence at a position cannot cancel positive
evidence at another."""

import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod


class GradCAMElementWise(ChannelMapMethod):
    """L^c = sum_k ReLU(g^k ⊙ A^k), g^k = d logit_c / d A^k (pytorch-grad-cam's definition; no paper of its own)."""

    name = "grad_cam_elementwise"
    title = "Grad-CAM element-wise"
    paper = "Gildenblat et al. 2021, pytorch-grad-cam (GitHub), GradCAMElementWise"
    raw_map = "sum_k ReLU(g^k * A^k), g^k = d logit_c / d A^k, element-wise"
    aliases = ("gradcamelementwise", "GradCAMElementWise", "grad_cam_element_wise")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = False

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """ReLU(g^k A^k): (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        return torch.relu(inputs.require("gradients") * inputs.require("activations"))
