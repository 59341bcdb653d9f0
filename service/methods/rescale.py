"""DeepLIFT's Rescale rule for one pass only (Shrikumar et al. 2017, sec. 3.5.1 and 3.3).

Inside `rescale_rule(model)`, the model runs on a batch whose first half are inputs x and whose second half are
their references x' (row i of the second half belongs to row i of the first). Each elementwise nonlinearity
y = f(x) back-propagates the multiplier m = (f(x) - f(x')) / (x - x') instead of f'(x), the same for both
halves (as captum does), or f'(x) where |x - x'| < eps (the limit). Linear layers (convolutions, BatchNorm in
eval mode, pooling by averages, additions) keep their gradients, which are their exact multipliers; so the input
gradient of the first half, times (x - x'), sums to S(x) - S(x') (summation-to-delta).

Max pooling keeps its gradient: the rule of DeepLIFT's own implementation (`MaxPoolDeepLiftMode.gradient`),
so the sum is then not exact. captum has a rule of its own for max pooling that keeps the sum on a plain
chain of modules, where the two disagree; on torchvision's ResNet-18 (in-place ReLU before its max pooling)
captum's rule does not take effect and its maps equal ours. Nonlinearities called as functions (`F.relu` in
a `forward`) are not modules, cannot be hooked, and keep their gradient too.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from model_store.hooks import forward_hooks

NONLINEARITIES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
)
EPS = 1e-10
"""Below this |x - x'| the multiplier is the gradient (captum's default eps)."""


class _Rescale(torch.autograd.Function):
    """y = f(x) for a (2B, ...) batch of inputs and references; backward by the Rescale rule."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: nn.Module) -> torch.Tensor:  # type: ignore[override]
        y = module.forward(x.clone())  # `forward`: not through the hooks; a copy: in-place modules
        ctx.save_for_backward(x, y)
        ctx.module = module
        return y

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        x, y = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            (gradient,) = torch.autograd.grad(ctx.module.forward(leaf.clone()), leaf, grad_output)
        x_in, x_ref = x.chunk(2)
        y_in, y_ref = y.chunk(2)
        delta_in, delta_out = torch.cat([x_in - x_ref] * 2), torch.cat([y_in - y_ref] * 2)
        rescaled = grad_output * delta_out / torch.where(delta_in.abs() < EPS, torch.ones_like(delta_in), delta_in)
        return torch.where(delta_in.abs() < EPS, gradient, rescaled), None


def nonlinearity_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, NONLINEARITIES)]


@contextmanager
def rescale_rule(model: nn.Module) -> Iterator[None]:
    """Within the block, the model's elementwise nonlinearities back-propagate DeepLIFT multipliers for a batch
    `cat([inputs, references])` (an even number of rows)."""
    modules = dict(model.named_modules())
    pending: dict[str, list[torch.Tensor]] = {}

    def keep_input(name: str, x: torch.Tensor) -> None:
        pending.setdefault(name, []).append(x.clone())

    def replace_output(name: str, _output: torch.Tensor) -> torch.Tensor:
        return _Rescale.apply(pending[name].pop(), modules[name])

    with forward_hooks(model, nonlinearity_names(model), replace_output, on_input=keep_input):
        yield
