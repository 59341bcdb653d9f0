"""Transformer attribution (Chefer, Gur & Wolf, 2021, "Transformer Interpretability Beyond Attention
Visualization", CVPR)."""

import torch
from torch import nn

from service.methods.attention_maps import attention_layers, patch_maps, rollout, why_no_attention
from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, NoOptions
from service.methods.passes import Steps


class TransformerAttribution(MultiPassMethod):
    """A-bar_l = mean_h((grad_A_l * R_A_l)^+) with R_A_l the LRP relevance of block l's attention probabilities for
    class c (`service.methods.attention_lrp`) and grad_A_l = d logit_c / d A_l; C = (A-bar_L + I) ... (A-bar_1 + I)
    (eq. 13-14; the rows are not rescaled, as in the authors' `compute_rollout_attention` of ViT_LRP.py). The map
    is the class token's row of C over the patch tokens.
    """

    name = "transformer_attribution"
    title = "Transformer attribution (LRP through attention)"
    paper = "Chefer et al. 2021, Transformer Interpretability Beyond Attention Visualization (CVPR)"
    raw_map = (
        "the class token's row over the patch tokens of the product over blocks of I + mean over heads of "
        "ReLU(d logit_c / d A * R_A), R_A the LRP relevance of the attention probabilities"
    )
    aliases = ("chefer", "TransformerAttribution", "transformer_lrp")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = NoOptions
    cost = "one forward + backward pass and one relevance pass per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST

    def not_applicable_to(self, module: nn.Module) -> str | None:
        missing = why_no_attention(module, self.name)
        if missing is None and (
            getattr(module, "global_pool", None) != "token"
            or not isinstance(getattr(module, "head", None), nn.Linear)
            or getattr(module, "head_dist", None) is not None  # DeiT's distilled models average two heads
        ):
            return f"{self.name} follows the relevance from one linear head on the class token; this model has none"
        return missing

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: NoOptions, classes: int) -> int:
        return 2 * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images and (N,) classes -> (N, h, w) on the patch grid."""
        runner = inputs.require("runner")
        gradients, relevances = yield from runner.attention_relevances(
            inputs.images, attention_layers(runner.module), inputs.classes
        )
        weighted = [(g * r).clamp(min=0).mean(dim=1) for g, r in zip(gradients, relevances, strict=True)]
        return patch_maps(runner.module, rollout(weighted, normalise=False), inputs.images.shape[-2:])
