"""XGrad-CAM (Fu et al., 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs")."""

import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod

EPS = 1e-7


class XGradCAM(ChannelMapMethod):
    """w_k^c = sum_ij (A^k_ij / sum_ab A^k_ab) dy^c/dA^k_ij;  L^c = ReLU(sum_k w_k^c A^k)  (Fu et al. eq. 9)."""

    name = "xgrad_cam"
    title = "XGrad-CAM"
    paper = "Fu et al. 2020, Axiom-based Grad-CAM (BMVC)"
    raw_map = "ReLU(sum_k w_k A^k) with w_k = sum_ij g_ij A_ij / sum_ij A_ij"
    aliases = ("xgradcam", "XGradCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = True

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """w_k A^k: (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        activations, grads = inputs.require("activations"), inputs.require("gradients")
        sums = activations.sum(dim=(2, 3), keepdim=True)
        weights = (grads * activations / (sums + EPS)).sum(dim=(2, 3))
        return weights[:, :, None, None] * activations
