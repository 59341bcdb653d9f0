"""Guided Grad-CAM (Selvaraju et al., 2017, sec. 3.1)."""

import torch
import torch.nn.functional as F

from service.methods.base import Method, MethodInputs, Need, max_abs_over_channels
from service.methods.grad_cam import grad_cam_map


class GuidedGradCAM(Method):
    """Guided backpropagation multiplied element-wise by Grad-CAM upsampled (bilinear) to the input."""

    name = "guided_grad_cam"
    title = "Guided Grad-CAM"
    paper = "Selvaraju et al. 2017, Grad-CAM (ICCV), sec. 3.1"
    raw_map = "max over colour channels of |guided gradient * upsampled Grad-CAM|, at the input resolution"
    aliases = ("guidedgradcam", "GuidedGradCam", "GuidedGradCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS, Need.GUIDED_GRADIENTS})
    cost = "the shared forward pass + its backward to the layer + the guided pass"
    sanity_check = True
    input_resolution = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients, (N, 3, H, W) guided gradients -> (N, H, W)."""
        guided = inputs.require("guided_gradients")
        cam = grad_cam_map(inputs.require("activations"), inputs.require("gradients"))[:, None]
        cam = F.interpolate(cam, size=guided.shape[-2:], mode="bilinear", align_corners=False)
        return max_abs_over_channels(guided * cam)
