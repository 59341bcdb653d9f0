"""Layer-wise relevance propagation (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear Classifier
Decisions by Layer-Wise Relevance Propagation") with Zennit's composites of rules, on a canonized copy of the
model (`service.methods.lrp_canonizers`)."""

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need
from service.methods.lrp_canonizers import Canonize, lrp_model, lrp_obstacle
from service.methods.lrp_rules import Composite, composite_rules
from service.methods.passes import Steps


@dataclass(frozen=True)
class LRPOptions:
    composite: Composite = "epsilon"
    """Which rule each layer gets, as Zennit's composites: `epsilon` (captum's default rules: epsilon 1e-9 on
    every layer), `epsilon_plus`, `epsilon_plus_flat`, `epsilon_gamma_box`, `epsilon_alpha2_beta1`,
    `epsilon_alpha2_beta1_flat`, `excitation_backprop`."""
    canonize: Canonize = "auto"
    """`auto`: batch norms merged into the layer before them, residual additions made rule modules; `none`: the
    model as it is (plain chains only; `epsilon` then equals captum's LRP)."""


class LRP(MultiPassMethod):
    """R_i: the relevance of input i when the class logit S_c is passed back layer by layer by the composite's
    rules (Montavon et al. 2019; Zennit's composites: `service.methods.lrp_rules`); the map sums the colour
    channels. Signed. Runs on a copy of the model kept for LRP, canonized: batch norms merged, residual
    additions split by their own rule. Applies to models whose forward, so canonized, chains convolutions,
    linear, batch-norm and pooling layers, ReLU or ReLU6 (passed on as ReLU), dropout, flatten and identity
    modules and residual additions (VGG, ResNets, the built-in EfficientNet-Lite0); not to models with other
    activations or products (squeeze-excitation blocks, attention).
    """

    name = "lrp"
    title = "LRP (Zennit's composites)"
    paper = (
        "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
        "Propagation (PLOS ONE); Montavon et al. 2019, Layer-Wise Relevance Propagation: An Overview"
    )
    raw_map = (
        "sum over colour channels of the relevance of logit_c at the input under the composite's rules (default "
        "`epsilon`: eps 1e-9 on every layer); signed"
    )
    aliases = ("LRP", "layerwise_relevance_propagation")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = LRPOptions
    cost = "one forward + backward pass per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def not_applicable_to(self, module: nn.Module) -> str | None:
        lrp_obstacle(module, "none")  # found now, at load, so that no request waits for that trace either
        return self.options_not_applicable_to(module, LRPOptions())

    def options_not_applicable_to(self, module: nn.Module, options: LRPOptions) -> str | None:
        obstacle = lrp_obstacle(module, options.canonize)
        if obstacle is None:
            return None
        return (
            f"lrp (canonize={options.canonize}) applies to chains of convolutions, linear, batch-norm and pooling "
            f"layers, ReLU, ReLU6, dropout, flatten and identity modules and residual additions; {obstacle}"
        )

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: LRPOptions, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options = inputs.require("runner"), inputs.options
        model = lrp_model(runner.module, options.canonize)
        rules = partial(composite_rules, model, options.composite, inputs.black, inputs.require("white"))
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            relevances = yield from runner.relevances(image[None], class_index, model, rules)
            maps.append(relevances[0].sum(dim=0))
        return torch.stack(maps)
