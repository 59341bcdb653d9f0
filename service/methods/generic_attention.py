"""Generic attention-model explainability (Chefer, Gur & Wolf, 2021, "Generic Attention-model Explainability for
Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV), for a vision transformer's self-attention."""

import torch
from torch import nn

from service.methods.attention_maps import attention_layers, patch_maps, why_no_attention
from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, NoOptions
from service.methods.passes import Steps


class GenericAttention(MultiPassMethod):
    """R = I; for each block l, first to last: R <- R + mean_h((grad_A_l * A_l)^+) R, with A_l the attention
    probabilities and grad_A_l = d logit_c / d A_l (eq. 5-6, rules 5 and 6 of the paper; `generate_relevance` of the
    authors' ViT notebook, Transformer_MM_explainability_ViT.ipynb). The map is the class token's row of R over
    the patch tokens.
    """

    name = "generic_attention"
    title = "Generic attention explainability"
    paper = (
        "Chefer et al. 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder "
        "Transformers (ICCV)"
    )
    raw_map = (
        "the class token's row over the patch tokens of R, where R starts as I and each block adds "
        "mean over heads of ReLU(d logit_c / d A * A) times R"
    )
    aliases = ("chefer_generic", "GenericAttention", "transformer_mm")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = NoOptions
    cost = "one forward + backward pass per class"
    sanity_check = True
    pass_cost = GRADIENT_PASS_COST

    def not_applicable_to(self, module: nn.Module) -> str | None:
        return why_no_attention(module, self.name)

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: NoOptions, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images and (N,) classes -> (N, h, w) on the patch grid."""
        runner = inputs.require("runner")
        attentions, gradients = yield from runner.attentions(
            inputs.images, attention_layers(runner.module), inputs.classes
        )
        tokens = attentions[0].shape[-1]
        relevance = torch.eye(tokens, device=inputs.images.device).expand(len(inputs.images), tokens, tokens)
        for attention, gradient in zip(attentions, gradients, strict=True):
            relevance = relevance + (gradient * attention).clamp(min=0).mean(dim=1) @ relevance
        return patch_maps(runner.module, relevance, inputs.images.shape[-2:])
