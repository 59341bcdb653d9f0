"""Random-CAM (pytorch-grad-cam's `RandomCAM`): channel weights drawn at random, the baseline an explanation
must beat (the model-randomisation and data-randomisation tests of Adebayo et al. 2018 use it as their floor)."""

from dataclasses import dataclass

import numpy as np
import torch

from service.methods.base import MethodInputs, Need
from service.methods.channel_maps import ChannelMapMethod


@dataclass(frozen=True)
class RandomCAMOptions:
    seed: int = 0
    """Seed of the weights, so that an answer is reproducible."""
    eigen_smooth: bool = False
    """Reduce the weighted activations with their first principal component instead of their sum."""
    aug_smooth: bool = False
    """Average the maps of six augmented inputs (flips and brightness)."""


class RandomCAM(ChannelMapMethod):
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
    reads_layer_only = True
    options_type = RandomCAMOptions
    sanity_check = False

    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """w_k A^k: (N, C, h, w) activations -> (N, C, h, w)."""
        activations = inputs.require("activations")
        draws = np.random.RandomState(inputs.options.seed).uniform(-1, 1, size=activations.shape[1])
        weights = torch.as_tensor(draws, dtype=activations.dtype, device=activations.device)
        return weights[None, :, None, None] * activations
