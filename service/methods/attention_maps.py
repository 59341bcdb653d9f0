"""A vision transformer's attention, as the transformer-native methods read it: which modules hold it, passes
with timm's fused attention turned off, and the rollout of per-block token-to-token matrices.

timm's `Attention` computes softmax(q k^T / sqrt(d)) and applies `attn_drop` to it, unless `fused_attn` sends
q, k and v to `scaled_dot_product_attention`, which never shows the probabilities. So these passes set
`fused_attn = False` on the blocks' attention modules for their own duration (the worker's thread is the only
one that runs the model) and read the probabilities at `attn_drop`'s output, as vit-explain does.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from model_store.grids import token_grid_size


def attention_layers(module: nn.Module) -> list[str]:
    """Names of the blocks' attention modules, in order, of a timm vision transformer ([] for other models)."""
    try:
        from timm.models.vision_transformer import Attention, VisionTransformer
    except ImportError:  # timm is a dependency, but a store of torchvision models does not need it
        return []
    if not isinstance(module, VisionTransformer):
        return []
    return [
        f"blocks.{i}.attn"
        for i, block in enumerate(module.blocks)
        if isinstance(getattr(block, "attn", None), Attention)
    ]


def why_no_attention(module: nn.Module, method: str) -> str | None:
    """Why `method` cannot read `module`'s attention (a sentence for the client), or None when it can."""
    layers = attention_layers(module)
    if layers and len(layers) == len(module.blocks):  # type: ignore[arg-type]
        return None
    return (
        f"{method} reads the attention probabilities of a vision transformer's blocks (timm's ViT and DeiT "
        "families, a class token first); this model has no such blocks"
    )


@contextmanager
def unfused_attention(module: nn.Module, layers: list[str]) -> Iterator[None]:
    """The named attention modules compute their probabilities explicitly (through `attn_drop`) inside the block;
    each module's own setting comes back on exit."""
    modules = [module.get_submodule(name) for name in layers]
    before = [m.fused_attn for m in modules]
    try:
        for m in modules:
            m.fused_attn = False
        yield
    finally:
        for m, fused in zip(modules, before, strict=True):
            m.fused_attn = fused


def rollout(matrices: list[torch.Tensor], normalise: bool) -> torch.Tensor:
    """Joint attention over the blocks: prod_l (A_l + I), first block rightmost (Abnar & Zuidema 2020, eq. 1 with
    the residual added), each factor's rows rescaled to sum to 1 when `normalise`. (N, T, T) each -> (N, T, T)."""
    joint = None
    for matrix in matrices:
        augmented = matrix + torch.eye(matrix.shape[-1], device=matrix.device, dtype=matrix.dtype)
        if normalise:
            augmented = augmented / augmented.sum(dim=-1, keepdim=True)
        joint = augmented if joint is None else augmented @ joint
    if joint is None:
        raise ValueError("no attention matrices to roll out")
    return joint


def patch_maps(module: nn.Module, relevance: torch.Tensor, input_size: torch.Size) -> torch.Tensor:
    """The class token's row of (N, T, T) token relevances as (N, h, w) patch grids of a timm ViT."""
    prefix = int(module.num_prefix_tokens)  # type: ignore[arg-type]
    grid = token_grid_size(relevance.shape[-1] - prefix, (int(input_size[0]), int(input_size[1])))
    if grid is None:
        raise ValueError(f"{relevance.shape[-1] - prefix} patch tokens make no grid for an input of {input_size}")
    return relevance[:, 0, prefix:].reshape(relevance.shape[0], *grid)
