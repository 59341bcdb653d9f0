"""Layer-wise relevance propagation's rules and composites (Bach et al. 2015; Montavon et al. 2019, "Layer-Wise
Relevance Propagation: An Overview"; the composites and the rules' exact forms are Zennit's, Anders et al.
2022, zennit 0.5.1).

Inside `composite_rules(model, composite, ...)`, each module with a rule passes relevance back instead of its
gradient: its output is replaced by a tensor whose backward maps the relevance R reaching the output to the
relevance at its inputs. A rule recomputes the layer on modified inputs and parameters (positive or negative
parts of the weights, the input's bounds, ...), and takes the gradient of those outputs, given R divided by
their stabilised sum, back to the modified inputs; the relevance is the modified inputs times their gradients,
combined as the rule says. Modules without a rule (max pooling in Zennit's composites, dropout, shape-only
modules) pass relevance on as their gradient does. The hooks hold this pass's tensors only and are removed when
the block ends.

Stabiliser: z + eps sign(z), the sign of 0 counted as +1 (Zennit's `stabilize`).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

Composite = Literal[
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "excitation_backprop",
]
COMPOSITES: tuple[str, ...] = Composite.__args__  # type: ignore[attr-defined]

CAPTUM_EPSILON = 1e-9
"""captum's EpsilonRule default: the `epsilon` composite's, on every layer."""
ZENNIT_EPSILON = 1e-6
"""Zennit's default epsilon and stabiliser for its composites."""
GAMMA = 0.25
"""Zennit's EpsilonGammaBox default."""


class ResidualSum(nn.Module):
    """a + b: a residual connection made a module by the canonizer, so that a rule can split its relevance."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


Kind = Literal[
    "convolution", "linear", "batch_norm", "avg_pool", "max_pool", "activation", "residual_sum", "pass_through"
]
_KINDS: tuple[tuple[type | tuple[type, ...], Kind], ...] = (
    (nn.Conv2d, "convolution"),
    (nn.Linear, "linear"),
    (nn.modules.batchnorm._BatchNorm, "batch_norm"),
    ((nn.AvgPool2d, nn.AdaptiveAvgPool2d), "avg_pool"),
    ((nn.MaxPool2d, nn.AdaptiveMaxPool2d), "max_pool"),
    ((nn.ReLU, nn.ReLU6), "activation"),
    (ResidualSum, "residual_sum"),
    ((nn.Dropout, nn.Flatten, nn.Identity), "pass_through"),
)


def rule_kind(module: nn.Module) -> Kind | None:
    """What a rule sees `module` as, or None if no rule covers it."""
    return next((kind for types, kind in _KINDS if isinstance(module, types)), None)


Rule = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], tuple[torch.Tensor, ...]]
"""(module, its inputs, relevance at its output) -> relevance at each input."""
ParamMod = Callable[[torch.Tensor], torch.Tensor]


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * ((z == 0).to(z) + z.sign())


def _positive(p: torch.Tensor) -> torch.Tensor:
    return p.clamp(min=0)


def _negative(p: torch.Tensor) -> torch.Tensor:
    return p.clamp(max=0)


def _run(module: nn.Module, x: torch.Tensor, weight: ParamMod, bias: ParamMod | None) -> torch.Tensor:
    """The layer on `x` with its weight and bias modified (bias None: zero)."""
    params = {"weight": weight(module.weight)}
    if module.bias is not None:
        params["bias"] = bias(module.bias) if bias is not None else torch.zeros_like(module.bias)
    return functional_call(module, params, (x,))


def _gradients(
    module: nn.Module, terms: list[tuple[torch.Tensor, ParamMod, ParamMod | None]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each (input, weight modifier, bias modifier) term's input (requiring grad) and the layer's output on it."""
    inputs = [x.detach().requires_grad_() for x, _, _ in terms]
    with torch.enable_grad():
        outputs = [_run(module, x, w, b) for x, (_, w, b) in zip(inputs, terms, strict=True)]
    return inputs, outputs


def _backward(outputs: list[torch.Tensor], inputs: list[torch.Tensor], grads: list[torch.Tensor]) -> tuple:
    return torch.autograd.grad(outputs, inputs, grad_outputs=grads)


def _same(p: torch.Tensor) -> torch.Tensor:
    return p


def epsilon(eps: float) -> Rule:
    """R_in_i = x_i * df/dx_i^T (R / stab(f(x))) on the layer as it is: Zennit's Epsilon (convolution, linear,
    captum's batch norm and pooling) and Norm (average pooling, the residual sum: the same formula)."""

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        xs = [x.detach().requires_grad_() for x in inputs]
        with torch.enable_grad():
            z = module(*xs)
        gradients = _backward([z], xs, [relevance / _stabilize(z.detach(), eps)])
        return tuple(x.detach() * g for x, g in zip(xs, gradients, strict=True))

    return rule


def z_plus(eps: float) -> Rule:
    """R_in = x+ W+^T s + x- W-^T s, s = R / stab(W+ x+ + b+ + W- x-) (bias: its positive part)."""

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        x = inputs[0]
        xs, zs = _gradients(module, [(_positive(x), _positive, _positive), (_negative(x), _negative, None)])
        s = relevance / _stabilize((zs[0] + zs[1]).detach(), eps)
        g = _backward(zs, xs, [s, s])
        return (xs[0].detach() * g[0] + xs[1].detach() * g[1],)

    return rule


def alpha_beta(alpha: float, beta: float, eps: float) -> Rule:
    """alpha times the positive contributions' share of R minus beta times the negative ones' (Zennit's AlphaBeta:
    positive part of the bias with the positive, negative part with the negative contributions)."""

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        x = inputs[0]
        xp, xn = _positive(x), _negative(x)
        xs, zs = _gradients(
            module,
            [(xp, _positive, _positive), (xn, _negative, None), (xp, _negative, _negative), (xn, _positive, None)],
        )
        plus = relevance / _stabilize((zs[0] + zs[1]).detach(), eps)
        minus = relevance / _stabilize((zs[2] + zs[3]).detach(), eps)
        g = _backward(zs, xs, [plus, plus, minus, minus])
        r = [x_.detach() * g_ for x_, g_ in zip(xs, g, strict=True)]
        return (alpha * (r[0] + r[1]) - beta * (r[2] + r[3]),)

    return rule


def gamma_rule(gamma: float, eps: float) -> Rule:
    """Zennit's Gamma: where the layer's output is positive, R goes to x+ (W + gamma W+) and x- (W + gamma W-),
    where negative, to x+ (W + gamma W-) and x- (W + gamma W+)."""

    def boost(part: ParamMod) -> ParamMod:
        return lambda p: p + gamma * part(p)

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        x = inputs[0]
        xp, xn = _positive(x), _negative(x)
        up, down = boost(_positive), boost(_negative)
        xs, zs = _gradients(module, [(xp, up, up), (xn, down, None), (xp, down, down), (xn, up, None)])
        with torch.no_grad():
            z = _run(module, x, _same, _same)
        plus = (z > 0) * relevance / _stabilize((zs[0] + zs[1]).detach(), eps)
        minus = (z < 0) * relevance / _stabilize((zs[2] + zs[3]).detach(), eps)
        g = _backward(zs, xs, [plus, plus, minus, minus])
        return (sum(x_.detach() * g_ for x_, g_ in zip(xs, g, strict=True)),)

    return rule


def z_box(low: torch.Tensor, high: torch.Tensor, eps: float) -> Rule:
    """The first layer, for inputs bounded by [low, high] (normalised black and white):
    R_in = x s' - l s'+ - h s'-, s' the gradients of z - W+ l - W- h given R / stab(that)."""

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        x = inputs[0]
        bottom, top = low.expand_as(x), high.expand_as(x)
        xs, zs = _gradients(module, [(x, _same, _same), (bottom, _positive, _positive), (top, _negative, _negative)])
        s = relevance / _stabilize((zs[0] - zs[1] - zs[2]).detach(), eps)
        g = _backward(zs, xs, [s, s, s])
        return (xs[0].detach() * g[0] - xs[1].detach() * g[1] - xs[2].detach() * g[2],)

    return rule


def flat(eps: float) -> Rule:
    """R spread over each output's receptive field by its size: ones for the input and the weights, no bias."""

    def rule(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
        xs, zs = _gradients(module, [(torch.ones_like(inputs[0]), torch.ones_like, None)])
        (g,) = _backward(zs, xs, [relevance / _stabilize(zs[0].detach(), eps)])
        return (g,)

    return rule


def pass_on(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
    """Zennit's `Pass`: the relevance at the output goes to the input unchanged (activations)."""
    return (relevance,)


def composite_map(
    composite: Composite, low: torch.Tensor, high: torch.Tensor
) -> tuple[dict[Kind, Rule], tuple[Kind, ...], Rule | None]:
    """The rule for each kind of module, the kinds the first layer is looked for among, and its rule."""
    eps = ZENNIT_EPSILON
    norm = epsilon(eps)
    base: dict[Kind, Rule] = {"activation": pass_on, "residual_sum": norm, "avg_pool": norm, "batch_norm": pass_on}
    if composite == "epsilon":
        every = epsilon(CAPTUM_EPSILON)
        kinds: tuple[Kind, ...] = ("convolution", "linear", "batch_norm", "avg_pool", "max_pool", "residual_sum")
        return {kind: every for kind in kinds} | {"activation": pass_on}, (), None
    if composite == "excitation_backprop":
        rules = {"residual_sum": norm, "avg_pool": norm, "convolution": z_plus(eps), "linear": z_plus(eps)}
        return rules | {"activation": pass_on}, (), None
    convolution = {
        "epsilon_plus": z_plus(eps),
        "epsilon_plus_flat": z_plus(eps),
        "epsilon_gamma_box": gamma_rule(GAMMA, eps),
        "epsilon_alpha2_beta1": alpha_beta(2.0, 1.0, eps),
        "epsilon_alpha2_beta1_flat": alpha_beta(2.0, 1.0, eps),
    }[composite]
    rules = base | {"convolution": convolution, "linear": epsilon(eps)}
    if composite == "epsilon_gamma_box":
        return rules, ("convolution",), z_box(low, high, eps)
    if composite.endswith("_flat"):
        return rules, ("convolution", "linear"), flat(eps)
    return rules, (), None


class _Relevance(torch.autograd.Function):
    """Forward: the module's output as computed; backward: the rule's relevance at the module's inputs."""

    @staticmethod
    def forward(ctx, rule: Rule, module: nn.Module, output: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rule, ctx.module, ctx.inputs = rule, module, tuple(x.detach().clone() for x in inputs)
        return output.detach().clone()

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple:  # type: ignore[override]
        return (None, None, None, *ctx.rule(ctx.module, ctx.inputs, relevance))


@contextmanager
def composite_rules(model: nn.Module, composite: Composite, low: torch.Tensor, high: torch.Tensor) -> Iterator[None]:
    """Within the block, input gradients of `model` (an LRP copy, `lrp_canonizers.lrp_model`) are relevances."""
    rules, first_kinds, first_rule = composite_map(composite, low, high)
    first_found = first_rule is None
    in_rule = [False]  # a rule runs its module again: that run passes gradients as usual

    def guarded(rule: Rule) -> Rule:
        def run(module: nn.Module, inputs: tuple[torch.Tensor, ...], relevance: torch.Tensor) -> tuple:
            in_rule[0] = True
            try:
                return rule(module, inputs, relevance)
            finally:
                in_rule[0] = False

        return run

    originals: dict[nn.Module, tuple] = {}
    handles = []
    try:
        for module in model.modules():
            kind = rule_kind(module)
            if kind is None:
                continue
            rule = rules.get(kind)
            if not first_found and kind in first_kinds:
                rule, first_found = first_rule, True
            if rule is None:
                continue

            def before(module: nn.Module, inputs: tuple) -> tuple:
                """The module runs on copies of its inputs: an in-place activation must not change the tensors
                whose relevance the rule gives (nor put its own gradient between them and the rule)."""
                if in_rule[0]:
                    return inputs
                originals[module] = inputs
                return tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in inputs)

            def after(module: nn.Module, _copies: tuple, output: torch.Tensor, rule: Rule = rule) -> torch.Tensor:
                if in_rule[0]:
                    return output
                tensors = [x for x in originals.pop(module) if isinstance(x, torch.Tensor)]
                if not any(x.requires_grad for x in tensors):
                    return output
                return _Relevance.apply(guarded(rule), module, output, *tensors)

            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        yield
    finally:
        for handle in handles:
            handle.remove()
