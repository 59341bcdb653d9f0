"""LayerCAM (Jiang et al., 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization")."""

import torch

from service.methods.base import Method, MethodInputs, Need


class LayerCAM(Method):
    """M^c = ReLU(sum_k ReLU(g^k_ij) A^k_ij): each location weighted by its own positive gradient (eq. 4-5)."""

    name = "layer_cam"
    title = "LayerCAM"
    paper = "Jiang et al. 2021, LayerCAM (IEEE TIP)"
    raw_map = "ReLU(sum_k ReLU(g^k) * A^k), element-wise"
    aliases = ("layercam", "LayerCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.LAYER_GRADIENTS})
    cost = "the shared forward pass + a backward pass from the logits to the layer"
    sanity_check = False

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w)."""
        return torch.relu((torch.relu(inputs.require("gradients")) * inputs.require("activations")).sum(dim=1))
