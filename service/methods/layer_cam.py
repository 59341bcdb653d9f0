"""LayerCAM (Jiang et al., 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization")."""

import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod


class LayerCAM(ChannelMapMethod):
    """M^c = ReLU(sum_k ReLU(g^k_ij) A^k_ij): each location weighted by its own positive gradient (eq. 4-5)."""

    name = "layer_cam"
    title = "LayerCAM"
    paper = "Jiang et al. 2021, LayerCAM (IEEE TIP)"
    raw_map = "ReLU(sum_k ReLU(g^k) * A^k), element-wise"
    aliases = ("layercam", "LayerCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = False

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """ReLU(g^k) A^k: (N, C, h, w) activations and gradients -> (N, C, h, w)."""
        return torch.relu(inputs.require("gradients")) * inputs.require("activations")
