"""Layer methods whose map reduces weighted activations over channels, and their `eigen_smooth` option.

pytorch-grad-cam's `eigen_smooth` replaces the sum over channels of the weighted activations W ⊙ A (N, C, h, w)
by their first principal component (positions x channels, centred), which removes much of the noise. Here the
component's sign is chosen so that its largest magnitude is positive (pytorch-grad-cam leaves it to the SVD).
"""

from abc import abstractmethod
from dataclasses import dataclass

import torch

from service.methods.base import Method, MethodInputs
from service.methods.projections import principal_projection


@dataclass(frozen=True)
class EigenSmoothOptions:
    eigen_smooth: bool = False
    """Reduce the weighted activations with their first principal component instead of their sum."""


class ChannelMapMethod(Method):
    """A layer method whose map is `reduce(W ⊙ A)`; subclasses give `weighted_activations` and, unless it is
    ReLU(sum over channels), `reduce`. Its options have an `eigen_smooth` flag."""

    options_type = EigenSmoothOptions

    @abstractmethod
    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """W ⊙ A: (N, C, h, w)."""

    def reduce(self, weighted: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w): ReLU(sum_k W^k ⊙ A^k)."""
        return torch.relu(weighted.sum(dim=1))

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w); with `eigen_smooth`, the signed first principal component of W ⊙ A."""
        weighted = self.weighted_activations(inputs)
        if getattr(inputs.options, "eigen_smooth", False):  # NoOptions: the defaults
            return principal_projection(weighted)
        return self.reduce(weighted)
