"""Layer-wise relevance propagation (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear Classifier
Decisions by Layer-Wise Relevance Propagation"), epsilon rule."""

import torch
from torch import nn

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, NoOptions
from service.methods.lrp_rules import lrp_obstacle
from service.methods.passes import Steps


class LRP(MultiPassMethod):
    """R_i: the relevance of input i when the class logit S_c is passed back layer by layer by the epsilon rule
    R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k (Montavon et al. 2019 eq. 3; eps 1e-9, captum's default rule
    for every layer); the map sums the colour channels. Signed. Applies only to plain chains of convolutions,
    linear, batch-norm and pooling layers, ReLU, dropout, flatten and identity modules (VGG, AlexNet): not to
    the built-in EfficientNet-Lite0 (ReLU6, whose clipping has no rule; `Conv2dSame`, which pads in its
    `forward`) nor to ResNets (residual additions: see `service.methods.lrp_rules`).
    """

    name = "lrp"
    title = "LRP (epsilon rule)"
    paper = (
        "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
        "Propagation (PLOS ONE)"
    )
    raw_map = "sum over colour channels of the epsilon-rule relevance of logit_c at the input (eps 1e-9); signed"
    aliases = ("LRP", "layerwise_relevance_propagation")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = NoOptions
    cost = "one forward + backward pass per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST
    input_resolution = True

    def not_applicable_to(self, module: nn.Module) -> str | None:
        obstacle = lrp_obstacle(module)
        if obstacle is None:
            return None
        return (
            "lrp applies to plain chains of convolutions, linear, batch-norm and pooling layers, ReLU, dropout, "
            f"flatten and identity modules; {obstacle}"
        )

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: NoOptions, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner = inputs.require("runner")
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            relevances = yield from runner.relevances(image[None], class_index)
            maps.append(relevances[0].sum(dim=0))
        return torch.stack(maps)
