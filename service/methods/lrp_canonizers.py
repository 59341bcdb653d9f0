"""The model LRP's rules run on: a canonized copy of the served model, made once per model and kept beside it
(Zennit's canonizers, Anders et al. 2022, "Software for Dataset-wide XAI"; Montavon et al. 2019, sec. 10.3.1).

The copy's `forward` is traced with torch.fx, with every module that has a rule (`lrp_rules.rule_kind`) as one
node, and the graph is rewritten:
- a batch norm whose input is a convolution's or linear layer's output (and nothing else's) is merged into that
  layer's weights and bias, as Zennit's `MergeBatchNorm`; the batch norm leaves the graph (timm's batch norm with
  a built-in activation, `BatchNormAct2d`, leaves its activation behind). The copy computes the same function:
  Zennit's merge instead keeps the batch norm with statistics (0, 1), which still divides by sqrt(1 + eps);
- an addition of two tensors (a residual connection: ResNet's basic and bottleneck blocks, EfficientNet's and
  MobileNet's inverted residual blocks) becomes a `ResidualSum` module, to which the composites give a rule of
  its own, as Zennit's ResNet canonizer does with its `Sum` of the stacked branches;
- dropout in a `forward` (identity when evaluating) is dropped.

`canonize=none` traces the model as it is, without the rewrite. What is left must only chain modules with a rule
and reshape: `lrp_obstacle` says what is not (a multiplication in a squeeze-excitation block, a function the
trace cannot follow) and the method is refused with that reason.
"""

import copy
import operator
import threading
import weakref
from typing import Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from service.methods.lrp_rules import ResidualSum, rule_kind

Canonize = Literal["auto", "none"]

RESHAPES = {torch.flatten, "flatten", "view", "reshape", "size", "contiguous"}
"""Functions and tensor methods a `forward` may call beside its modules: they only move values."""
ADDITIONS = {operator.add, torch.add}
DROPOUTS = {F.dropout, torch.dropout}


class _RuleTracer(torch.fx.Tracer):
    """Keeps every module that has a rule as one node (timm's `Conv2dSame` pads inside its own `forward`).

    While it traces, torch.fx patches `nn.Module.__call__` and `__getattr__` for the whole process: another
    thread's forward pass (another model's worker) would go through this tracer and fail ("module is not
    installed as a submodule"). Calls from other threads pass straight through. And two traces at once would
    each restore what the other patched in, leaving a tracer's wrapper in place for good: one traces at a time."""

    _one_at_a_time = threading.Lock()

    def trace(self, root: nn.Module, concrete_args: dict | None = None) -> torch.fx.Graph:
        with self._one_at_a_time:
            self._thread = threading.get_ident()
            return super().trace(root, concrete_args)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return rule_kind(m) is not None or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward, args, kwargs):  # type: ignore[no-untyped-def]
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val, parameter_proxy_cache: dict):  # type: ignore[no-untyped-def]
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


_copies: "weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]]" = weakref.WeakKeyDictionary()
_obstacles: "weakref.WeakKeyDictionary[nn.Module, dict[str, str | None]]" = weakref.WeakKeyDictionary()


def lrp_obstacle(module: nn.Module, canonize: Canonize = "auto") -> str | None:
    """Why LRP's rules do not cover `module` under `canonize`, or None (found once per model and canonize; the
    copy made to find it is let go until a request needs it)."""
    obstacles = _obstacles.setdefault(module, {})
    if canonize not in obstacles:
        made = _make_copy(module, canonize)
        obstacles[canonize] = made if isinstance(made, str) else None
    return obstacles[canonize]


def lrp_model(module: nn.Module, canonize: Canonize) -> nn.Module:
    """The copy of `module` the rules run on, made at its first use and kept beside the model.

    Raises:
        ValueError: LRP does not cover the model (`lrp_obstacle` says why).
    """
    copies = _copies.setdefault(module, {})
    if canonize not in copies:
        made = _make_copy(module, canonize)
        if isinstance(made, str):
            raise ValueError(made)
        copies[canonize] = made
    return copies[canonize]


def _make_copy(module: nn.Module, canonize: Canonize) -> nn.Module | str:
    try:
        root = copy.deepcopy(module).eval().requires_grad_(False)
        graph = _RuleTracer().trace(root)
    except Exception as exc:  # noqa: BLE001 - any failure to copy or trace means the forward cannot be checked
        return f"its forward cannot be traced to check that it only chains its modules ({type(exc).__name__})"
    traced = torch.fx.GraphModule(root, graph)
    if canonize == "auto":
        _merge_batch_norms(traced)
        _split_residual_sums(traced)
        _drop_dropouts(traced)
        traced.graph.eliminate_dead_code()
        traced.delete_all_unused_submodules()
        traced.recompile()
    return _find_obstacle(traced) or traced


def _merge_batch_norms(traced: torch.fx.GraphModule) -> None:
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or rule_kind(traced.get_submodule(node.target)) != "batch_norm":
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        layer = traced.get_submodule(source.target)
        if rule_kind(layer) not in ("convolution", "linear"):
            continue
        batch_norm = traced.get_submodule(node.target)
        _merge(layer, batch_norm)
        remainder = list(batch_norm.children())  # timm's BatchNormAct2d: its dropout and activation
        if remainder:
            traced.add_submodule(node.target, nn.Sequential(*remainder))
        else:
            node.replace_all_uses_with(source)
            traced.graph.erase_node(node)


def _merge(layer: nn.Module, batch_norm: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold y = (W x + b - mean) * gamma / sqrt(var + eps) + beta into W and b."""
    scale = batch_norm.weight / (batch_norm.running_var + batch_norm.eps).sqrt()
    bias = layer.bias if layer.bias is not None else torch.zeros_like(batch_norm.running_mean)
    layer.weight = nn.Parameter(layer.weight * scale.view(-1, *([1] * (layer.weight.dim() - 1))), False)
    layer.bias = nn.Parameter((bias - batch_norm.running_mean) * scale + batch_norm.bias, False)


def _split_residual_sums(traced: torch.fx.GraphModule) -> None:
    count = 0
    for node in list(traced.graph.nodes):
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if node.op != "call_function" or node.target not in ADDITIONS or len(tensors) != 2 or node.kwargs:
            continue
        name = f"residual_sum_{count}"
        count += 1
        traced.add_submodule(name, ResidualSum())
        with traced.graph.inserting_after(node):
            summed = traced.graph.call_module(name, tuple(tensors))
        node.replace_all_uses_with(summed)
        traced.graph.erase_node(node)


def _drop_dropouts(traced: torch.fx.GraphModule) -> None:
    for node in list(traced.graph.nodes):
        if node.op == "call_function" and node.target in DROPOUTS:
            node.replace_all_uses_with(node.args[0])
            traced.graph.erase_node(node)


def _find_obstacle(traced: torch.fx.GraphModule) -> str | None:
    for node in traced.graph.nodes:
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            for name, leaf in [(node.target, module), *((f"{node.target}.{n}", m) for n, m in module.named_modules())]:
                if not list(leaf.children()) and rule_kind(leaf) is None:
                    return f"its module '{name}' ({type(leaf).__name__}) has no relevance rule"
            if rule_kind(module) == "batch_norm" and list(module.children()):
                return f"its module '{node.target}' ({type(module).__name__}) applies an activation inside a batch norm"
        if node.op in ("call_function", "call_method") and node.target not in RESHAPES | DROPOUTS:
            called = getattr(node.target, "__name__", str(node.target))
            return f"its forward calls '{called}', which has no relevance rule"
    return None
