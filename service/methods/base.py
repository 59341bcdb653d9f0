"""What an explanation method is: a small unit that declares its needs and computes maps for many targets.

The worker plans the passes of a batch from the declared needs (`Need`), gathers one `LayerInputs` per
(method, layer) group, one row per (image, class) target, and calls `compute` once for the whole group.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import torch


class Need(StrEnum):
    ACTIVATIONS = "activations"
    """The target layer's output, captured during the shared forward pass."""
    LAYER_GRADIENTS = "layer_gradients"
    """d(class logit)/d(activation), from the logits back to the target layer only."""
    CLASSIFIER_WEIGHTS = "classifier_weights"
    """The linear classifier's weight row of each target class (GAP + linear heads only)."""


@dataclass(frozen=True)
class LayerInputs:
    """Per-target inputs of a layer method; row n belongs to the n-th (image, class) target.

    Attributes:
        activations: (N, C, h, w) target layer output of the target's image.
        gradients: (N, C, h, w) gradient of the target's class logit w.r.t. `activations`, or None.
        class_weights: (N, C) classifier weight row of the target's class, or None.
    """

    activations: torch.Tensor
    gradients: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None


class Method(ABC):
    """One explanation method. Subclasses set the class attributes and implement `compute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    raw_map: ClassVar[str]
    """The exact definition of the raw map the method returns, as published by `GET /v1/methods`."""
    aliases: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[frozenset[Need]]
    requires: ClassVar[str | None] = None

    @property
    def needs_gradients(self) -> bool:
        return Need.LAYER_GRADIENTS in self.needs

    @abstractmethod
    def compute(self, inputs: LayerInputs) -> torch.Tensor:
        """Raw maps on the layer's grid: (N, C, h, w) inputs -> (N, h, w)."""
