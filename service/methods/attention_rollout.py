"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers", sec. 3)."""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from service.methods.attention_maps import attention_layers, patch_maps, rollout, why_no_attention
from service.methods.base import MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps

HeadFusion = Literal["mean", "max", "min"]


@dataclass(frozen=True)
class AttentionRolloutOptions:
    head_fusion: HeadFusion = "mean"
    """How a block's heads become one matrix: their mean (the paper), max or min (vit-explain's options)."""
    discard_ratio: float = 0.0
    """Fraction of each fused matrix's smallest entries set to 0 before the rollout (never the class token's own
    attention); 0 in the paper, 0.9 in vit-explain's examples."""


class AttentionRollout(MultiPassMethod):
    """A~_l = norm_rows(A_l + I) with A_l block l's attention fused over heads; the map is the class token's
    row of A~_L ... A~_1 over the patch tokens (Abnar & Zuidema eq. 1: the residual connection as an identity,
    rows rescaled to sum to 1). Class-independent.

    `discard_ratio` and `head_fusion` follow jacobgil's vit-explain (`vit_rollout.py`), with one difference:
    vit-explain rescales with `a / a.sum(dim=-1)`, which divides each column by a row's sum; here each row is
    divided by its own sum, as in the paper and in Abnar's `compute_joint_attention` (the two agree when nothing
    is discarded, since every row of (A + I) / 2 then sums to 1).
    """

    name = "attention_rollout"
    title = "Attention rollout"
    paper = "Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers (ACL)"
    raw_map = (
        "the class token's row of the product over blocks of A_l + I with rows rescaled to sum to 1, A_l the "
        "attention fused over heads (`head_fusion`, lowest `discard_ratio` dropped), over the patch tokens"
    )
    aliases = ("rollout", "AttentionRollout", "attention-rollout")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = AttentionRolloutOptions
    cost = "one forward pass per image, shared by its classes"
    sanity_check = False

    def not_applicable_to(self, module: nn.Module) -> str | None:
        return why_no_attention(module, self.name)

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: AttentionRolloutOptions, classes: int
    ) -> int:
        return 1

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, h, w) on the patch grid; one pass per image, whatever its classes."""
        runner, options = inputs.require("runner"), inputs.options
        firsts = torch.stack([rows[0] for rows in inputs.rows_by_image()])
        attentions, _ = yield from runner.attentions(inputs.images[firsts], attention_layers(runner.module))
        fused = [fuse_heads(a, options.head_fusion) for a in attentions]
        if options.discard_ratio > 0:
            fused = [discard_lowest(f, options.discard_ratio) for f in fused]
        joint = rollout(fused, normalise=True)  # rows of (A + I) / 2 rescaled to sum to 1 are those of A + I
        maps = patch_maps(runner.module, joint, inputs.images.shape[-2:])
        per_image = dict(zip(inputs.image_index[firsts].tolist(), maps, strict=True))
        return torch.stack([per_image[i] for i in inputs.image_index.tolist()])


def fuse_heads(attention: torch.Tensor, how: HeadFusion) -> torch.Tensor:
    """(N, heads, T, T) -> (N, T, T)."""
    if how == "mean":
        return attention.mean(dim=1)
    return attention.amax(dim=1) if how == "max" else attention.amin(dim=1)


def discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Each image's int(T*T*ratio) smallest entries set to 0, except the class token's attention to itself:
    (N, T, T) -> (N, T, T)."""
    flat = fused.flatten(1).clone()
    _, lowest = flat.topk(int(flat.shape[1] * ratio), dim=1, largest=False)
    keep_class_token = lowest != 0
    rows = torch.arange(flat.shape[0], device=flat.device)[:, None].expand_as(lowest)
    flat[rows[keep_class_token], lowest[keep_class_token]] = 0
    return flat.view_as(fused)
