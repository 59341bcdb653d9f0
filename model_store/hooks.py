"""The one way to look inside a model: hooks that exist only inside a `with` block.

Hooks are registered on entry and always removed on exit, so the warm model carries no hook between requests.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

OutputHook = Callable[[str, torch.Tensor], torch.Tensor | None]
InputHook = Callable[[str, torch.Tensor], None]


@contextmanager
def forward_hooks(
    model: nn.Module,
    layer_names: Sequence[str],
    on_output: OutputHook,
    on_input: InputHook | None = None,
) -> Iterator[None]:
    """Call `on_input(name, input)` before and `on_output(name, output)` after each named layer runs; a tensor
    returned by `on_output` replaces the layer's output.

    Raises:
        KeyError: a name is not a submodule of `model`.
    """
    modules = dict(model.named_modules())
    handles = []
    try:
        for name in layer_names:
            module = modules[name]

            def hook(_module: nn.Module, _inputs: object, output: object, name: str = name) -> object:
                if isinstance(output, torch.Tensor):
                    return on_output(name, output)
                return None

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
