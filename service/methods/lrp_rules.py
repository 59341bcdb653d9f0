"""Layer-wise relevance propagation by the epsilon rule, for one pass only (Bach et al. 2015; Montavon et al.
2019, "Layer-Wise Relevance Propagation: An Overview", eq. 3; captum's LRP with its default rules).

Inside `epsilon_rule(model)`, the gradient that a backward pass carries is turned into relevance at every layer
with a rule: at the layer's output z the incoming relevance R is divided by z + eps sign(z), autograd applies
the layer's transposed Jacobian (its weights), and at the layer's input x the result is multiplied by x:
R_in = x * J^T (R / (z + eps sign z)). Rectifiers, dropout and shape-only modules pass relevance on as their
gradient does (relevance reaching a ReLU's output is already 0 where the unit is off). The hooks are on this
pass's tensors and the module hooks are removed when the block ends.

Only models built of these modules admit the rule (`lrp_obstacle`): captum's supported layers (convolution,
linear, batch norm, max and average pooling; ReLU and dropout) and shape-only modules (flatten, identity), by
exact type, whose `forward` (traced with torch.fx) does nothing else than call them and reshape. An addition in
`forward` (a ResNet's residual connection) has no rule: captum passes relevance through it as gradient, and on a
seeded ResNet-18 the relevances then sum to about 1e10 for a logit of 2.5; such models are refused.
"""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.fx
from torch import nn

from model_store.hooks import forward_hooks

EPSILON = 1e-9
"""captum's EpsilonRule default."""
RULE_LAYERS = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
)
PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Flatten, nn.Identity)
RESHAPES = {torch.flatten, "flatten", "view", "reshape", "size", "contiguous"}
"""Functions and tensor methods a `forward` may call beside its modules: they only move values."""

_obstacles: "weakref.WeakKeyDictionary[nn.Module, str | None]" = weakref.WeakKeyDictionary()


def lrp_obstacle(model: nn.Module) -> str | None:
    """Why the epsilon rule does not apply to `model`, or None (found once per model, then remembered)."""
    if model not in _obstacles:
        _obstacles[model] = _find_obstacle(model)
    return _obstacles[model]


def _find_obstacle(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if not list(module.children()) and type(module) not in RULE_LAYERS + PASS_THROUGH:
            return f"its module '{name}' ({type(module).__name__}) has no relevance rule"
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any failure to trace means the forward cannot be checked
        return f"its forward cannot be traced to check that it only chains its modules ({type(exc).__name__})"
    for node in graph.nodes:
        if node.op in ("call_function", "call_method") and node.target not in RESHAPES:
            called = getattr(node.target, "__name__", str(node.target))
            return f"its forward calls '{called}' (a residual addition or a function), which has no relevance rule"
    return None


def rule_layer_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) in RULE_LAYERS]


@contextmanager
def epsilon_rule(model: nn.Module) -> Iterator[None]:
    """Within the block, input gradients of the model are relevances divided by the output they start from."""
    hooked_inputs: set[int] = set()
    kept: list[torch.Tensor] = []  # keeps hooked tensors alive, so that their ids are not reused in the pass

    def on_input(_name: str, x: torch.Tensor) -> None:
        if x.requires_grad and id(x) not in hooked_inputs:
            hooked_inputs.add(id(x))
            kept.append(x)
            value = x.detach()
            x.register_hook(lambda gradient, value=value: gradient * value)

    def on_output(_name: str, z: torch.Tensor) -> torch.Tensor:
        if z.requires_grad:
            value = z.detach()
            stabilizer = torch.where(value >= 0, EPSILON, -EPSILON)
            z.register_hook(lambda gradient, value=value, stabilizer=stabilizer: gradient / (value + stabilizer))
        return z.clone()  # later in-place operations (residual additions) must not change the hooked output

    with forward_hooks(model, rule_layer_names(model), on_output, on_input=on_input):
        yield
