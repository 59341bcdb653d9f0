"""Grad-CAM++ (Chattopadhyay et al., 2018, "Grad-CAM++: Generalized Gradient-based Visual Explanations for
Deep Convolutional Networks")."""

import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod

EPS = 1e-6


class GradCAMPlusPlus(ChannelMapMethod):
    """w_k^c = sum_ij a_ij^kc ReLU(g_ij^k),  L^c = ReLU(sum_k w_k^c A^k)  (Chattopadhyay et al. eq. 9).

    With an exponential on the score, the 2nd and 3rd derivatives reduce to powers of the first (eq. 19):
    a_ij^kc = g^2 / (2 g^2 + sum_ab A_ab^k g^3), with g = d logit_c / d A^k_ij, and a = 0 where g = 0.
    """

    name = "grad_cam_pp"
    title = "Grad-CAM++"
    paper = "Chattopadhyay et al. 2018, Grad-CAM++ (WACV)"
    raw_map = "ReLU(sum_k w_k A^k) with w_k = sum_ij a_ij ReLU(g_ij), a = g^2/(2g^2 + sum(A) g^3) (eq. 19)"
    aliases = ("gradcam++", "gradcampp", "GradCAM++", "GradCAMPlusPlus", "grad-cam++")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = False

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """w_k A^k: (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        activations, grads = inputs.require("activations"), inputs.require("gradients")
        grads_2 = grads.pow(2)
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        alpha = grads_2 / (2 * grads_2 + sum_activations * grads_2 * grads + EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * torch.relu(grads)).sum(dim=(2, 3))
        return weights[:, :, None, None] * activations
