"""Shapley-CAM (Cai et al., 2025, "CAMs as Shapley Value-based Explainers", arXiv:2501.06261), as
pytorch-grad-cam's `ShapleyCAM`."""

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, weighted_sum
from service.methods.passes import Steps

NO_SECOND_DERIVATIVE = (torch.nn.Hardsigmoid,)
"""Modules whose backward pass PyTorch cannot differentiate again (`aten::hardsigmoid_backward`)."""


class ShapleyCAM(MultiPassMethod):
    """w_k^c = mean_ij (g^k - (1/2) (H A)^k)_ij,  L^c = ReLU(sum_k w_k^c A^k), with g = d logit_c / d A and H A the
    Hessian of the logit with respect to A applied to A: a second-order estimate of each channel's Shapley value.

    Where the network after the layer is piecewise linear in A (a GAP + linear head, ReLU networks), H A = 0 and
    the map is Grad-CAM's. One forward pass and a double backward pass to the layer per class.
    """

    name = "shapley_cam"
    title = "Shapley-CAM"
    paper = "Cai et al. 2025, CAMs as Shapley Value-based Explainers (arXiv:2501.06261)"
    raw_map = "ReLU(sum_k w_k A^k), w_k = spatial mean of (g - H A / 2), H the Hessian of logit_c at the layer"
    aliases = ("shapleycam", "ShapleyCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    cost = "the shared forward pass + one forward pass with a double backward pass to the layer, per class"
    pass_cost = GRADIENT_PASS_COST
    sanity_check = True

    def not_applicable_to(self, module: torch.nn.Module) -> str | None:
        if any(isinstance(m, NO_SECOND_DERIVATIVE) for m in module.modules()):
            return "it needs second derivatives, and PyTorch has none for hardsigmoid (MobileNetV3's squeeze-excite)"
        return None

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: object, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, h, w)."""
        runner, layer = inputs.require("runner"), inputs.layer
        if layer is None:
            raise RuntimeError("shapley_cam needs a layer")
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            activations, gradients, product = yield from runner.layer_hessian_products(image[None], layer, class_index)
            weights = (gradients - 0.5 * product).mean(dim=(2, 3))
            maps.append(torch.relu(weighted_sum(weights, activations))[0])
        return torch.stack(maps)
