"""Changing the backward rule of a model's rectifiers for one pass only (guided backprop, deconvnet).

Inside `rectifier_rule(model, rule)`, each nn.ReLU / nn.ReLU6 output is replaced by the same values computed
by `_Rectify`, whose backward applies `rule`. The input is copied before the module runs, so in-place ReLUs
work; the hooks are removed when the block ends, so other passes and the warm model keep the usual rule.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from model_store.hooks import forward_hooks

Rule = Literal["guided", "deconvnet"]
RECTIFIERS = (nn.ReLU, nn.ReLU6)


class _Rectify(torch.autograd.Function):
    """y = clamp(x, 0, upper); backward by the chosen rule instead of the gradient of clamp."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float, rule: str) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.upper, ctx.rule = upper, rule
        return x.clamp(min=0, max=upper)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        positive = grad_output.clamp(min=0)
        if ctx.rule == "deconvnet":
            return positive, None, None  # Zeiler & Fergus: ReLU on the backward signal only
        return positive * ((x > 0) & (x < ctx.upper)), None, None  # Springenberg et al.: both masks


def rectifier_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, RECTIFIERS)]


@contextmanager
def rectifier_rule(model: nn.Module, rule: Rule) -> Iterator[None]:
    """Within the block, the model's rectifiers back-propagate by `rule`."""
    modules = dict(model.named_modules())
    pending: dict[str, list[torch.Tensor]] = {}

    def keep_input(name: str, x: torch.Tensor) -> None:
        pending.setdefault(name, []).append(x.clone())

    def replace_output(name: str, _output: torch.Tensor) -> torch.Tensor:
        module = modules[name]
        upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")
        return _Rectify.apply(pending[name].pop(), upper, rule)

    with forward_hooks(model, rectifier_names(model), replace_output, on_input=keep_input):
        yield
