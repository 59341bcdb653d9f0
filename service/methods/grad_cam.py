"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization")."""

import torch

from service.methods.base import MethodInputs, Need, weighted_sum
from service.methods.channel_maps import ChannelMapMethod


def grad_cam_map(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k mean_ij(g^k) A^k): (N, C, h, w) twice -> (N, h, w)."""
    return torch.relu(weighted_sum(gradients.mean(dim=(2, 3)), activations))


class GradCAM(ChannelMapMethod):
    """alpha_k^c = (1/Z) sum_ij dy^c/dA^k_ij;  L^c = ReLU(sum_k alpha_k^c A^k)  (Selvaraju et al. eq. 1-2).

    Works at any conv layer of any architecture. On a GAP + linear head, alpha_k^c = w_k^c / Z, so it equals
    ReLU(CAM) / Z.
    """

    name = "grad_cam"
    title = "Grad-CAM"
    paper = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks (ICCV)"
    raw_map = "ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of d logit_c / d A^k"
    aliases = ("gradcam", "GradCAM", "grad-cam")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = True

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """alpha_k A^k: (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        return inputs.require("gradients").mean(dim=(2, 3), keepdim=True) * inputs.require("activations")
