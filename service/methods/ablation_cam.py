"""Ablation-CAM (Desai & Ramaswamy, 2020, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization")."""

import torch

from service.methods.base import MethodInputs, MultiPassMethod, Need, NoOptions, weighted_sum
from service.methods.passes import Steps


class AblationCAM(MultiPassMethod):
    """w_k^c = (y^c - y^c_k) / y^c, y^c_k the logit with channel k of the layer set to zero (eq. 3);
    L^c = ReLU(sum_k w_k^c A^k).

    One forward pass per channel for each image (shared by all its classes), batched in chunks; the layer's
    output is replaced by the ablated copies, so nothing before the layer changes.
    """

    name = "ablation_cam"
    title = "Ablation-CAM"
    paper = "Desai & Ramaswamy 2020, Ablation-CAM (WACV)"
    raw_map = "ReLU(sum_k w_k A^k), w_k = (logit_c - logit_c with channel k zeroed) / logit_c"
    aliases = ("ablationcam", "AblationCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    cost = "the shared forward pass + one forward pass per channel of the layer, per image"
    sanity_check = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: NoOptions, classes: int) -> int:
        return channels

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, C, h, w) activations, (N, 3, H, W) images -> (N, h, w)."""
        activations, runner = inputs.require("activations"), inputs.require("runner")
        layer = inputs.layer
        if layer is None:
            raise RuntimeError("ablation_cam needs a layer")
        weights = torch.empty(activations.shape[:2], device=activations.device)
        for rows in inputs.rows_by_image():
            first = rows[0]
            original = inputs.logits[first, inputs.classes[rows]]  # (r,)

            def ablated(channels: torch.Tensor, activation: torch.Tensor = activations[first]) -> torch.Tensor:
                copies = activation.expand(len(channels), *activation.shape).clone()
                copies[torch.arange(len(channels)), channels] = 0
                return copies

            logits = yield from runner.logits_with_layer_output(
                inputs.images[first], layer, activations.shape[1], ablated
            )
            scores = logits[:, inputs.classes[rows]].T  # (r, C)
            weights[rows] = (original[:, None] - scores) / original[:, None]
        return torch.relu(weighted_sum(weights, activations))
