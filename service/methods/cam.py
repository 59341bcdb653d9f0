"""CAM: class activation mapping (Zhou et al., 2016, "Learning Deep Features for Discriminative Localization")."""

import torch

from service.methods.base import LayerInputs, Method, Need


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

    def compute(self, inputs: LayerInputs) -> torch.Tensor:
        """(N, C, h, w) activations, (N, C) weights -> (N, h, w)."""
        assert inputs.class_weights is not None  # guaranteed by `needs`
        return torch.einsum("nc,nchw->nhw", inputs.class_weights, inputs.activations)
