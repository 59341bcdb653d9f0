"""Random-CAM (pytorch-grad-cam's `RandomCAM`): channel weights drawn at random, the baseline an explanation
must beat (the model-randomisation and data-randomisation tests of Adebayo et al. 2018 use it as their floor)."""

from dataclasses import dataclass

import numpy as np
import torch

from service.methods.base import Method, MethodInputs, Need, weighted_sum


@dataclass(frozen=True)
class RandomCAMOptions:
    seed: int = 0
    """Seed of the weights, so that an answer is reproducible."""


class RandomCAM(Method):
    """w_k ~ U(-1, 1) i.i.d.;  L = ReLU(sum_k w_k A^k).

    The weights of each target are numpy's `RandomState(seed).uniform(-1, 1, C)`: the draws of pytorch-grad-cam's
    `np.random.uniform` after `np.random.seed(seed)`, so the two agree for the same seed, and an answer does not
    depend on its batch companions. No gradient and no class: it ignores the classifier.
    """

    name = "random_cam"
    title = "Random-CAM"
    paper = "Gildenblat et al. 2021, pytorch-grad-cam (GitHub), RandomCAM; a baseline, not an explanation"
    raw_map = "ReLU(sum_k w_k A^k), w_k ~ U(-1, 1) from RandomState(seed)"
    aliases = ("randomcam", "RandomCAM")
    needs = frozenset({Need.ACTIVATIONS})
    options_type = RandomCAMOptions
    sanity_check = False

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) activations -> (N, h, w)."""
        activations = inputs.require("activations")
        draws = np.random.RandomState(inputs.options.seed).uniform(-1, 1, size=activations.shape[1])
        weights = torch.as_tensor(draws, dtype=activations.dtype, device=activations.device)
        return torch.relu(weighted_sum(weights.expand(len(activations), -1), activations))
