"""XGrad-CAM (Fu et al., 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs")."""

import torch

from service.methods.base import Method, MethodInputs, Need, weighted_sum

EPS = 1e-7


class XGradCAM(Method):
    """w_k^c = sum_ij (A^k_ij / sum_ab A^k_ab) dy^c/dA^k_ij;  L^c = ReLU(sum_k w_k^c A^k)  (Fu et al. eq. 9)."""

    name = "xgrad_cam"
    title = "XGrad-CAM"
    paper = "Fu et al. 2020, Axiom-based Grad-CAM (BMVC)"
    raw_map = "ReLU(sum_k w_k A^k) with w_k = sum_ij g_ij A_ij / sum_ij A_ij"
    aliases = ("xgradcam", "XGradCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w)."""
        activations, grads = inputs.require("activations"), inputs.require("gradients")
        sums = activations.sum(dim=(2, 3), keepdim=True)
        weights = (grads * activations / (sums + EPS)).sum(dim=(2, 3))
        return torch.relu(weighted_sum(weights, activations))
