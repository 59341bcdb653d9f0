"""Relevance of a vision transformer's attention probabilities for a class: Chefer et al.'s LRP rules through a
timm ViT (Chefer, Gur & Wolf 2021, "Transformer Interpretability Beyond Attention Visualization", sec. 3.1-3.2).

The relevance starts as the class's one-hot vector at the logits and goes back block by block, from the last
to the first, under the rules of the authors' reference code (`modules/layers_ours.py`, `baselines/ViT/ViT_LRP.py`
of hila-chefer/Transformer-Explainability), written here in closed form:
- linear layers: the alpha=1, beta=0 rule on signed inputs, R_j = x+_j (S w+)_j + x-_j (S w-)_j with
  S = R / (x+ w+^T + x- w-^T) (bias left out);
- the class-token pooling and the matrix products (attention x values, queries x keys): R_j = x_j (dZ/dx)^T S,
  S = R / Z, each operand of a product keeping half;
- residual sums: each branch's share x S, rescaled so that the branches keep the shares |sum| / (|sum a| +
  |sum b|) of the relevance that arrived (per image); the copy that feeds both branches sums them back;
- layer norms, GELU, softmax, dropout and layer scales pass the relevance on unchanged.
Every division is the reference's `safe_divide`. The relevance of a block's attention probabilities is what
reaches them from the values' product, halved, before the softmax.
"""

import torch
from torch import nn

from model_store.hooks import forward_hooks


def safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b with b pushed 1e-9 away from zero, and 0 where b is 0 (the reference's stabiliser)."""
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).to(den.dtype) * 1e-9
    return a / den * b.ne(0).to(b.dtype)


def linear_relevance(relevance: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Alpha=1, beta=0 rule of a linear layer: (..., out) relevance, (..., in) input, (out, in) weight -> (..., in)."""
    positive_w, negative_w = weight.clamp(min=0), weight.clamp(max=0)
    positive_x, negative_x = x.clamp(min=0), x.clamp(max=0)
    s = safe_divide(relevance, positive_x @ positive_w.T + negative_x @ negative_w.T)
    return positive_x * (s @ positive_w) + negative_x * (s @ negative_w)


def sum_relevance(relevance: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of the two terms of a residual sum a + b, each (B, ...), conserving each image's total."""
    s = safe_divide(relevance, a + b)
    ra, rb = a * s, b * s
    dims = tuple(range(1, a.ndim))
    a_sum, b_sum = ra.sum(dims, keepdim=True), rb.sum(dims, keepdim=True)
    total = relevance.sum(dims, keepdim=True)
    both = a_sum.abs() + b_sum.abs()
    a_share = safe_divide(a_sum.abs(), both) * total
    b_share = safe_divide(b_sum.abs(), both) * total
    return ra * safe_divide(a_share, a_sum), rb * safe_divide(b_share, b_sum)


def copy_relevance(first: torch.Tensor, second: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Relevance of a tensor x that fed two branches, from the branches' relevances (each like x)."""
    return x * (safe_divide(first, x) + safe_divide(second, x))


def product_relevance(
    relevance: torch.Tensor, a: torch.Tensor, b: torch.Tensor, transpose_b: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Halved relevances of the operands of Z = a @ b (or a @ b^T): (..., i, j) relevance of Z -> like a, like b."""
    z = a @ (b.transpose(-2, -1) if transpose_b else b)
    s = safe_divide(relevance, z)
    if transpose_b:  # Z = a b^T: dZ/da^T S = S b, dZ/db^T S = S^T a
        return a * (s @ b) / 2, b * (s.transpose(-2, -1) @ a) / 2
    return a * (s @ b.transpose(-2, -1)) / 2, b * (a.transpose(-2, -1) @ s) / 2


def _block_names(i: int) -> list[str]:
    block = f"blocks.{i}"
    return [
        block,
        f"{block}.ls1",
        f"{block}.ls2",
        f"{block}.norm2",
        f"{block}.attn.qkv",
        f"{block}.attn.attn_drop",
        f"{block}.attn.proj",
        f"{block}.mlp.fc1",
        f"{block}.mlp.fc2",
    ]


def attention_relevances(
    module: nn.Module, inputs: torch.Tensor, classes: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """For each block of a timm ViT (fused attention off), first to last, (B, heads, T, T): the gradient of
    logit_class at the attention probabilities and their relevance for the class. (B, 3, H, W) inputs, (B,)
    classes. Runs one forward pass and one backward pass in the caller's grad mode (enabled)."""
    blocks = module.blocks  # type: ignore[attr-defined]
    names = [name for i in range(len(blocks)) for name in _block_names(i)] + ["norm", "head"]
    seen_in: dict[str, torch.Tensor] = {}
    seen_out: dict[str, torch.Tensor] = {}

    def on_output(name: str, output: torch.Tensor) -> None:
        seen_out[name] = output

    def on_input(name: str, value: torch.Tensor) -> None:
        seen_in[name] = value

    with forward_hooks(module, names, on_output, on_input):
        logits = module(inputs.detach().requires_grad_())  # the parameters are frozen: the graph starts here
    probabilities = [seen_out[f"blocks.{i}.attn.attn_drop"] for i in range(len(blocks))]
    score = logits.gather(1, classes[:, None]).sum()
    gradients = [g.detach() for g in torch.autograd.grad(score, probabilities)]

    with torch.no_grad():
        inp = {name: value.detach() for name, value in seen_in.items()}
        out = {name: value.detach() for name, value in seen_out.items()}
        one_hot = torch.zeros_like(logits).scatter_(1, classes[:, None], 1.0)
        pooled = linear_relevance(one_hot, inp["head"], module.head.weight)  # type: ignore[union-attr]
        tokens = out["norm"]
        relevance = torch.zeros_like(tokens)
        relevance[:, :1] = tokens[:, :1] * safe_divide(pooled[:, None], tokens[:, :1])
        relevances: list[torch.Tensor] = [torch.empty(0)] * len(blocks)
        for i in reversed(range(len(blocks))):
            relevances[i], relevance = _block_relevance(blocks[i], f"blocks.{i}", relevance, inp, out, first=i == 0)
    return gradients, relevances


def _block_relevance(
    block: nn.Module,
    name: str,
    relevance: torch.Tensor,
    inp: dict[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    first: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block, backwards: (B, T, D) relevance of its output -> (B, heads, T, T) relevance of its attention
    probabilities and (B, T, D) relevance of its input (not computed for the first block: nothing needs it)."""
    attention = block.attn  # type: ignore[union-attr]
    x_in, x_mid = inp[name], inp[f"{name}.norm2"]
    residual, mlp = sum_relevance(relevance, x_mid, out[f"{name}.ls2"])
    mlp = linear_relevance(mlp, inp[f"{name}.mlp.fc2"], block.mlp.fc2.weight)  # type: ignore[union-attr]
    mlp = linear_relevance(mlp, inp[f"{name}.mlp.fc1"], block.mlp.fc1.weight)  # type: ignore[union-attr]
    relevance = copy_relevance(residual, mlp, x_mid)

    residual, attended = sum_relevance(relevance, x_in, out[f"{name}.ls1"])
    attended = linear_relevance(attended, inp[f"{name}.attn.proj"], attention.proj.weight)
    batch, tokens, _ = attended.shape
    heads = attention.num_heads
    attended = attended.reshape(batch, tokens, heads, -1).transpose(1, 2)  # (B, heads, T, d)
    qkv = out[f"{name}.attn.qkv"].reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    probabilities = out[f"{name}.attn.attn_drop"]
    attention_relevance, v_relevance = product_relevance(attended, probabilities, v, transpose_b=False)
    if first:
        return attention_relevance, relevance
    q_relevance, k_relevance = product_relevance(attention_relevance, q, k, transpose_b=True)
    qkv_relevance = (
        torch.stack([q_relevance, k_relevance, v_relevance]).permute(1, 3, 0, 2, 4).reshape(batch, tokens, -1)
    )
    attended = linear_relevance(qkv_relevance, inp[f"{name}.attn.qkv"], attention.qkv.weight)
    return attention_relevance, copy_relevance(residual, attended, x_in)
