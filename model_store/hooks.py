"""The one way to look inside a model: hooks that exist only inside a `with` block.

Hooks are registered on entry and always removed on exit, so the warm model carries no hook between requests.
Layers with a `LayerGrid` (token and channels-last layers) are seen, and replaced, as (B, C, h, w) grids; layers
of several feature levels (an FPN) are seen as one grid, never replaced.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from model_store.grids import LayerGrid

OutputHook = Callable[[str, torch.Tensor], torch.Tensor | None]
InputHook = Callable[[str, torch.Tensor], None]
LevelsHook = Callable[[str, Mapping[str, torch.Tensor]], None]


@contextmanager
def forward_hooks(
    model: nn.Module,
    layer_names: Sequence[str],
    on_output: OutputHook,
    on_input: InputHook | None = None,
    grids: Mapping[str, LayerGrid] | None = None,
    on_levels: LevelsHook | None = None,
) -> Iterator[None]:
    """Call `on_input(name, input)` before and `on_output(name, output)` after each named layer runs; a tensor
    returned by `on_output` replaces the layer's output. A layer in `grids` passes its output to `on_output`
    as its (B, C, h, w) grid, and a grid returned goes back to the layer's own layout, except a grid of levels,
    which is read only. A layer not in `grids` whose output is a mapping (of feature levels, say) goes to
    `on_levels(name, output)` instead, when given.

    Raises:
        KeyError: a name is not a submodule of `model`.
    """
    modules = dict(model.named_modules())
    handles = []
    try:
        for name in layer_names:
            module = modules[name]

            def hook(_module: nn.Module, _inputs: object, output: object, name: str = name) -> object:
                grid = (grids or {}).get(name)
                if isinstance(output, Mapping):
                    if grid is not None and grid.layout == "levels":
                        on_output(name, grid.to_grid(output))
                    elif grid is None and on_levels is not None:
                        on_levels(name, output)
                    return None
                if not isinstance(output, torch.Tensor):
                    return None
                if grid is None:
                    return on_output(name, output)
                replaced = on_output(name, grid.to_grid(output))
                return None if replaced is None else grid.from_grid(replaced, output)

            handles.append(module.register_forward_hook(hook))
            if on_input is not None:

                def pre_hook(_module: nn.Module, inputs: tuple, name: str = name) -> None:
                    if inputs and isinstance(inputs[0], torch.Tensor):
                        on_input(name, inputs[0])

                handles.append(module.register_forward_pre_hook(pre_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
