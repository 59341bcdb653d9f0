"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization")."""

import torch

from service.methods.base import LayerInputs, Method, Need


class GradCAM(Method):
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

    def compute(self, inputs: LayerInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w)."""
        assert inputs.gradients is not None  # guaranteed by `needs`
        alpha = inputs.gradients.mean(dim=(2, 3))
        return torch.relu(torch.einsum("nc,nchw->nhw", alpha, inputs.activations))
