"""Finer-CAM (Zhang et al., 2025, "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
Explanation", arXiv:2501.11309), on Grad-CAM, as pytorch-grad-cam's `FinerCAM`."""

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need
from service.methods.grad_cam import grad_cam_map
from service.methods.passes import Steps

COMPARISONS = (1, 2, 3)
"""Ranks, by closeness of their logit to the target's, of the classes the target is compared with."""
ALPHA = 1.0
"""Comparison strength (pytorch-grad-cam's default)."""


def finer_score_weights(logits: torch.Tensor, class_index: int) -> torch.Tensor:
    """(K,) logits -> (K,) d S / d logits, S = sum_j p_j (y_c - alpha y_j) / sum_j p_j over the comparison
    classes j (the nearest logits to y_c), p the softmax probabilities (pytorch-grad-cam's FinerWeightedTarget,
    whose probabilities are not detached, so they are differentiated too)."""
    ranked = torch.argsort((logits - logits[class_index]).abs())
    main, others = int(ranked[0]), ranked[list(COMPARISONS[: len(logits) - 1])]
    leaf = logits.detach().double().requires_grad_()
    with torch.enable_grad():
        probabilities = torch.softmax(leaf, dim=0)[others]
        score = (probabilities * (leaf[main] - ALPHA * leaf[others])).sum() / (probabilities.sum() + 1e-9)
        (weights,) = torch.autograd.grad(score, leaf)
    return weights.to(logits.dtype)


class FinerCAM(MultiPassMethod):
    """Grad-CAM of S = sum_j p_j (y_c - alpha y_j) / sum_j p_j, j the 3 classes whose logits are nearest y_c:
    what tells the class from its look-alikes. L^c = ReLU(sum_k mean_ij(dS/dA^k) A^k).

    One forward pass and a backward pass to the layer per class, seeded with dS/dlogits.
    """

    name = "finer_cam"
    title = "Finer-CAM"
    paper = "Zhang et al. 2025, Finer-CAM (arXiv:2501.11309), on Grad-CAM as pytorch-grad-cam"
    raw_map = "Grad-CAM of sum_j p_j (logit_c - logit_j) / sum_j p_j, j the 3 classes with the nearest logits"
    aliases = ("finercam", "FinerCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    cost = "the shared forward pass + one forward pass with a backward pass to the layer, per class"
    pass_cost = GRADIENT_PASS_COST
    sanity_check = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: object, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images, (N, K) logits -> (N, h, w)."""
        runner, layer = inputs.require("runner"), inputs.layer
        if layer is None:
            raise RuntimeError("finer_cam needs a layer")
        maps = []
        for image, logits, class_index in zip(inputs.images, inputs.logits, inputs.classes.tolist(), strict=True):
            seed = finer_score_weights(logits, class_index)
            activations, gradients = yield from runner.layer_gradients(image[None], layer, seed)
            maps.append(grad_cam_map(activations, gradients)[0])
        return torch.stack(maps)
