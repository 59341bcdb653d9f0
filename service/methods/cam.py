"""CAM: class activation mapping (Zhou et al., 2016, "Learning Deep Features for Discriminative Localization")."""

import torch

from service.methods.base import Method, MethodInputs, Need, weighted_sum


class CAM(Method):
    """M_c(x, y) = sum_k w_k^c A^k(x, y)  (Zhou et al. 2016, eq. 2).

    Exact for a global-average-pool + linear head, where S_c = sum_k w_k^c GAP(A^k) + b_c: one product of the
    class weight rows with the last feature maps, no backward pass. The raw map keeps its sign.
    """

    name = "cam"
    title = "CAM"
    paper = "Zhou et al. 2016, Learning Deep Features for Discriminative Localization (CVPR)"
    raw_map = "sum_k w_k^c A^k(x,y): classifier weight row of class c times the feature maps; signed, no ReLU"
    aliases = ("CAM",)
    needs = frozenset({Need.ACTIVATIONS, Need.CLASSIFIER_WEIGHTS})
    requires = "a global-average-pool + linear head, at the layer that feeds it"
    sanity_check = True

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C) weights, (N, C, h, w) activations -> (N, h, w)."""
        return weighted_sum(inputs.require("class_weights"), inputs.require("activations"))
