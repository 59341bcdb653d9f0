"""Feature maps of an image at a layer, and the filters of a first convolution (torch side, worker thread).

- Feature maps (Zeiler & Fergus 2014, the course's "what does each channel respond to"): from a layer's output
  A (C, h, w), the mean of each channel, and the raw maps of the `top_n` channels with the largest mean.
- Filters (Krizhevsky et al. 2012, fig. 3): the kernels (O, 3, k, k) of a convolution over the three colour
  channels, each kernel min-max normalised on its own to [0, 1] so that it can be shown as an RGB tile.

The PNG grids are drawn from these on the CPU by `service.visualization.png`.
"""

from dataclasses import dataclass

import torch
from torch import nn

from model_store import LoadedModel
from model_store.hooks import forward_hooks
from service.core.errors import InvalidParameter, UnknownLayer
from service.visualization.objectives import require_layer


@dataclass(frozen=True)
class FeatureMaps:
    """Per-channel means (C,), the top channels (n,) by decreasing mean and their raw maps (n, h, w); CPU."""

    means: torch.Tensor
    channels: torch.Tensor
    maps: torch.Tensor


def layer_activations(model: LoadedModel, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    """(B, 3, H, W) normalised input -> `layer`'s output (B, C, h, w), no gradients.

    Raises:
        UnknownLayer, MethodNotApplicable: see `require_layer`.
    """
    require_layer(model, layer)
    captured: dict[str, torch.Tensor] = {}

    def capture(name: str, output: torch.Tensor) -> None:
        captured[name] = output.clone()

    with forward_hooks(model.module, [layer], capture, grids=model.layer_grids), torch.inference_mode():
        model.module(inputs)
    return captured[layer]


def feature_maps(activation: torch.Tensor, top_n: int) -> FeatureMaps:
    """(C, h, w) layer output -> means (C,), the min(top_n, C) channels of largest mean and their maps.

    Raises:
        InvalidParameter: `top_n` < 1.
    """
    if top_n < 1:
        raise InvalidParameter(f"top_n must be at least 1, got {top_n}")
    activation = activation.detach().float().cpu()
    means = activation.mean(dim=(1, 2))
    channels = torch.topk(means, k=min(top_n, len(means))).indices
    return FeatureMaps(means=means, channels=channels, maps=activation[channels])


def filter_layers(model: LoadedModel) -> list[str]:
    """The convolutions of `model` whose input is the three colour channels (ungrouped)."""
    return [
        name
        for name, module in model.module.named_modules()
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1
    ]


def filter_weights(model: LoadedModel, layer: str) -> torch.Tensor:
    """The kernels (O, 3, k_h, k_w) of `layer`, a copy on the CPU.

    Raises:
        UnknownLayer: `layer` is not a module of the model.
        InvalidParameter: it is not a convolution over the three colour channels; the message names those.
    """
    modules = dict(model.module.named_modules())
    usable = filter_layers(model)
    if layer not in modules:
        raise UnknownLayer(f"unknown layer '{layer}' for model '{model.name}'; layers with filters: {usable}")
    if layer not in usable:
        raise InvalidParameter(
            f"layer '{layer}' is not a convolution over the 3 colour channels; layers with filters: {usable}"
        )
    return modules[layer].weight.detach().to("cpu", copy=True)


def normalize_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(O, 3, k, k) -> (O, 3, k, k) in [0, 1], each kernel min-max normalised on its own (constant: zeros)."""
    flat = weight.detach().float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    normalised = torch.where(span > 1e-12, (flat - low) / span.clamp(min=1e-12), torch.zeros_like(flat))
    return normalised.view_as(weight)
