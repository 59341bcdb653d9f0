"""What an explanation method is: a small unit that declares its needs and computes maps for many targets.

The worker plans the passes of a batch from the declared needs (`Need`), gathers one `MethodInputs` per
(method, layer, options) group, one row per (image, class) target, and runs the method once for the group.
A method that needs extra passes (`MultiPassMethod`) is a generator of chunks (`service.methods.passes.Steps`), so that
the worker can serve other requests between two chunks of its passes.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from service.methods.passes import Steps, run_to_end

if TYPE_CHECKING:
    from service.methods.passes import PassRunner


class Need(StrEnum):
    ACTIVATIONS = "activations"
    """The target layer's output, captured during the shared forward pass."""
    LAYER_GRADIENTS = "layer_gradients"
    """d(class logit)/d(activation), from the logits back to the target layer only (shared pass)."""
    CLASSIFIER_WEIGHTS = "classifier_weights"
    """The linear classifier's weight row of each target class (GAP + linear heads only)."""
    INPUT_GRADIENTS = "input_gradients"
    """d(class logit)/d(input), from the shared forward pass, back to the input."""
    GUIDED_GRADIENTS = "guided_gradients"
    """Input gradients under the guided-backprop rectifier rule: one forward + backward pass of its own."""
    DECONV_GRADIENTS = "deconv_gradients"
    """Input gradients under the deconvnet rectifier rule: one forward + backward pass of its own."""
    EXTRA_PASSES = "extra_passes"
    """Further batched forward (and backward) passes, run in chunks by a `PassRunner`."""


Fill = Literal["black", "mean"]

GRADIENT_PASS_COST = 3
"""A forward + backward pass in forward-pass equivalents (a backward pass costs about two forward passes)."""


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has no request parameters."""


@dataclass(frozen=True)
class MethodInputs:
    """Per-target inputs of a method; row n belongs to the n-th (image, class) target.

    Attributes:
        image_index: (N,) index of the target's image in the batch (targets of one image share passes).
        classes: (N,) target class.
        images: (N, 3, H, W) normalised input of the target's image.
        logits: (N, K) logits of the target's image from the shared forward pass.
        black: (3, 1, 1) the normalised value of a black pixel.
        white: (3, 1, 1) the normalised value of a white pixel.
        options: the group's options, an instance of the method's `options_type`.
        activations: (N, C, h, w) target layer output, if needed.
        gradients: (N, C, h, w) d logit_c / d activations, if needed.
        class_weights: (N, C) classifier weight row of the class, if needed.
        input_gradients, guided_gradients, deconv_gradients: (N, 3, H, W), if needed.
        runner: runs extra batched passes.
        layer: the target layer (None for input-resolution methods).
    """

    image_index: torch.Tensor
    classes: torch.Tensor
    images: torch.Tensor
    logits: torch.Tensor
    black: torch.Tensor
    options: Any
    white: torch.Tensor | None = None
    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None
    input_gradients: torch.Tensor | None = None
    guided_gradients: torch.Tensor | None = None
    deconv_gradients: torch.Tensor | None = None
    runner: "PassRunner | None" = None
    layer: str | None = None

    def rows_by_image(self) -> Iterator[torch.Tensor]:
        """The row indices of each image's targets, one image at a time (its classes share its passes)."""
        for image_index in self.image_index.unique().tolist():
            yield (self.image_index == image_index).nonzero().flatten()

    def require(self, name: str) -> torch.Tensor:
        """A tensor the method declared it needs (the planner guarantees it is there)."""
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"the planner did not provide '{name}'")
        return value


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
    options_type: ClassVar[type] = NoOptions
    """A frozen dataclass of the request parameters that tune the method (beside `class` and `layer`), whose
    defaults are the method's; its field names are the API's parameter names."""
    cost: ClassVar[str] = "the shared forward pass"
    """The cost in forward passes, in words, as published by `GET /v1/methods`."""
    pass_cost: ClassVar[int] = 1
    """Forward-pass equivalents of one of its extra passes: 1, or `GRADIENT_PASS_COST` for passes that also go
    backward to the input; the request's cost bound counts them."""
    sanity_check: ClassVar[bool]
    """Whether its maps change when the classifier's weights are re-initialised (Adebayo et al. 2018);
    measured by tests/service/methods/test_sanity_check.py."""

    @property
    def needs_gradients(self) -> bool:
        return Need.LAYER_GRADIENTS in self.needs

    input_resolution: ClassVar[bool] = False
    """Maps at the model's input resolution; otherwise on the target layer's grid."""
    reads_layer_only: ClassVar[bool] = False
    """Whether the method only reads the layer's activations (no gradient at the layer, no output of its own in
    place of the layer's): such a method also applies at a layer of several feature levels (an FPN) seen as one
    grid (`model_store.grids.levels_grid`)."""

    @property
    def parameters(self) -> tuple[str, ...]:
        """Request parameters that tune the method (beside `class` and `layer`)."""
        return tuple(f.name for f in fields(self.options_type))

    def options_from(self, values: dict[str, Any]) -> Any:
        """The method's options from request values by name (None or absent: the method's default)."""
        return self.options_type(**{name: values[name] for name in self.parameters if values.get(name) is not None})

    @property
    def uses_layer(self) -> bool:
        """Whether the `layer` parameter applies (the method reads a layer's activations)."""
        return Need.ACTIVATIONS in self.needs

    def not_applicable_to(self, module: torch.nn.Module) -> str | None:
        """Why the method cannot explain `module` (a sentence for the client), or None when it can."""
        return None

    def options_not_applicable_to(self, module: torch.nn.Module, options: Any) -> str | None:
        """Why the method with these `options` cannot explain `module`, or None when it can."""
        return None

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: Any, classes: int) -> int:
        """Forward passes beyond the shared ones, per image, for the cost bound (`options`: its `options_type`)."""
        return 0

    @abstractmethod
    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """Raw maps: (N, h, w) on the layer's grid, or (N, H, W) at the input resolution."""

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """`compute` as chunks of work; a method without passes of its own is one chunk."""
        return self.compute(inputs)
        yield  # a generator that returns at its first step


class MultiPassMethod(Method):
    """A method that runs extra passes through `inputs.runner`, a chunk per step of `compute_steps`."""

    @abstractmethod
    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """Raw maps as `compute` gives them, yielding after each chunk of extra passes (`yield from runner...`)."""

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        return run_to_end(self.compute_steps(inputs))


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A^k: (N, C) weights and (N, C, h, w) activations -> (N, h, w)."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def max_abs_over_channels(gradients: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, H, W): the largest absolute value over colour channels (Simonyan et al.)."""
    return gradients.abs().amax(dim=1)
