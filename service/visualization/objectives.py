"""What a visualization maximises: a class logit, the mean of one channel of a layer, or one neuron.

As in Lucid (Olah et al. 2017, "Feature Visualization", Distill) and lucent's `objectives.py`:

    class:    S_c(x)                        the logit of class c
    channel:  mean_{y,x} A^k_{y,x}(x)        the mean of channel k of a layer's output
    neuron:   A^k_{y,x}(x)                  one position (x, y) of channel k, on the layer's own grid

Objectives are checked against the model before any work is queued (`validate_objective`), and evaluated for
a whole batch in one hooked forward pass (`evaluate_objectives`), each row with its own objective.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from model_store import LoadedModel
from model_store.hooks import forward_hooks
from service.core.errors import InvalidParameter, MethodNotApplicable, UnknownClass, UnknownLayer


@dataclass(frozen=True)
class ClassObjective:
    """The logit of class `class_index` (a segmentation model's: its mean over the pixels)."""

    class_index: int

    @property
    def layer(self) -> None:
        return None

    def value(self, logits: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(K,) or (K, H, W) logits of one image -> scalar."""
        return logits[self.class_index].mean()


@dataclass(frozen=True)
class ChannelObjective:
    """The mean over positions of channel `channel` of `layer`'s output."""

    layer: str
    channel: int

    def value(self, logits: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """{layer: (C, h, w)} of one image -> scalar."""
        return outputs[self.layer][self.channel].mean()


@dataclass(frozen=True)
class NeuronObjective:
    """Channel `channel` of `layer`'s output at column `x`, row `y` of the layer's grid (for the model's input
    size); None means the centre (for an even side, the lower/right of the two middle positions, as lucent)."""

    layer: str
    channel: int
    x: int | None = None
    y: int | None = None

    def value(self, logits: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """{layer: (C, h, w)} of one image -> scalar."""
        if self.x is None or self.y is None:
            raise ValueError("a neuron objective must be validated (which fills in the centre) before use")
        return outputs[self.layer][self.channel, self.y, self.x]


Objective = ClassObjective | ChannelObjective | NeuronObjective


def require_layer(model: LoadedModel, layer: str) -> tuple[int, int, int]:
    """The output shape (C, h, w) of `layer` at the model's input size.

    Raises:
        MethodNotApplicable: the model's layers cannot be hooked (TorchScript).
        UnknownLayer: `layer` is not one of the model's layers with a 2-D feature map.
    """
    if isinstance(model.module, torch.jit.ScriptModule):
        raise MethodNotApplicable(f"model '{model.name}' is TorchScript: its layers cannot be hooked")
    if layer not in model.layer_shapes:
        raise UnknownLayer(
            f"unknown layer '{layer}' for model '{model.name}'; "
            f"list the usable layers with GET /v1/models/{model.name} (default: {model.default_layer})"
        )
    return model.layer_shapes[layer]


def validate_objective(objective: Objective, model: LoadedModel) -> Objective:
    """Check `objective` against `model`; return it with a neuron's default position filled in.

    Raises:
        UnknownClass: class index out of range.
        UnknownLayer, MethodNotApplicable: see `require_layer`; a class of a detection model.
        InvalidParameter: channel out of range, neuron outside the layer's grid.
    """
    if isinstance(objective, ClassObjective):
        if model.detection:
            raise MethodNotApplicable(
                f"model '{model.name}' is a detection model, whose output is boxes, not a logit per class: maximise "
                "a layer's channel or neuron instead"
            )
        if not 0 <= objective.class_index < model.num_classes:
            raise UnknownClass(
                f"class index {objective.class_index} is out of range; "
                f"model '{model.name}' has classes 0..{model.num_classes - 1}"
            )
        return objective
    channels, height, width = require_layer(model, objective.layer)
    if not 0 <= objective.channel < channels:
        raise InvalidParameter(
            f"channel {objective.channel} is out of range; layer '{objective.layer}' has channels 0..{channels - 1}"
        )
    if isinstance(objective, NeuronObjective):
        x = width // 2 if objective.x is None else objective.x
        y = height // 2 if objective.y is None else objective.y
        if not (0 <= x < width and 0 <= y < height):
            raise InvalidParameter(
                f"neuron (x={x}, y={y}) is outside layer '{objective.layer}', whose grid is {width} wide and "
                f"{height} high at the model's input size: x in 0..{width - 1}, y in 0..{height - 1}"
            )
        return replace(objective, x=x, y=y)
    return objective


def evaluate_objectives(
    model: LoadedModel, objectives: Sequence[Objective], inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One hooked forward pass: row i's value of `objectives[i]`, and the logits.

    Gradients flow when the caller enables them; the model's own parameters stay frozen.

    Args:
        inputs: (B, 3, H, W) normalised model input, B == len(objectives).

    Returns:
        values (B,) and logits (B, K).
    """
    layers = sorted({o.layer for o in objectives if o.layer is not None})
    captured: dict[str, torch.Tensor] = {}

    def capture(layer: str, output: torch.Tensor) -> torch.Tensor:
        captured[layer] = output
        # Downstream layers get a copy, so in-place ops after the layer cannot change what was captured.
        return output.clone()

    with forward_hooks(model.module, layers, capture, grids=model.layer_grids):
        logits = model.module(inputs)
    values = [
        objective.value(logits[row], {layer: output[row] for layer, output in captured.items()})
        for row, objective in enumerate(objectives)
    ]
    return torch.stack(values), logits
