"""Eigen-Grad-CAM (pytorch-grad-cam's `EigenGradCAM`): Eigen-CAM (Muhammad & Yeasin 2020) of the activations
weighted element-wise by their gradients, which makes it class-discriminative."""

import torch

from service.methods.base import Method, MethodInputs, Need
from service.methods.projections import principal_projection


class EigenGradCAM(Method):
    """The first principal component of g ⊙ A (positions x channels, centred), g = d logit_c / d A.

    As Eigen-CAM here, the projection's sign is chosen so that its largest magnitude is positive (pytorch-grad-cam
    leaves it to the SVD, so its map may come out negated: the display's ReLU then keeps the other side).
    """

    name = "eigen_grad_cam"
    title = "Eigen-Grad-CAM"
    paper = "Muhammad & Yeasin 2020, Eigen-CAM (IJCNN), on g * A as pytorch-grad-cam's EigenGradCAM"
    raw_map = "projection of the centred g * A (hw x C) on its first right singular vector; signed"
    aliases = ("eigengradcam", "EigenGradCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = False

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w)."""
        return principal_projection(inputs.require("gradients") * inputs.require("activations"))
