"""The reference computations of the transformer-native methods, ported for the agreement tests.

- Chefer, Gur & Wolf 2021 (CVPR), hila-chefer/Transformer-Explainability (MIT licence): `modules/layers_ours.py`
  (the layers with their `relprop`, relevance by autograd as there) and `baselines/ViT/ViT_LRP.py` (the ViT with
  `relprop`, and `method="transformer_attribution"`), reduced to what a ViT with a linear head uses.
- Chefer, Gur & Wolf 2021 (ICCV), hila-chefer/Transformer-MM-Explainability: `generate_relevance` of
  Transformer_MM_explainability_ViT.ipynb, on the same model.
- jacobgil/vit-explain `vit_rollout.py` (`rollout`, batch of one), with `keepdim=True` in its row rescaling
  (see the note in `service/methods/attention_rollout.py`), and Abnar's `compute_joint_attention`
  (samiraabnar/attention_flow), in numpy.

The ViT takes a timm ViT's state dict (the reference was written from the same code, so its names are timm's);
its last layer norm's eps is timm's 1e-6 (the reference's default 1e-5 would change the logits, not the method).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def safe_divide(a, b):
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).type(den.type()) * 1e-9
    return a / den * b.ne(0).type(b.type())


def forward_hook(self, input, output):
    if type(input[0]) in (list, tuple):
        self.X = []
        for i in input[0]:
            x = i.detach()
            x.requires_grad = True
            self.X.append(x)
    else:
        self.X = input[0].detach()
        self.X.requires_grad = True
    self.Y = output


class RelProp(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_forward_hook(forward_hook)

    def gradprop(self, Z, X, S):
        return torch.autograd.grad(Z, X, S, retain_graph=True)

    def relprop(self, R, alpha):
        return R


class RelPropSimple(RelProp):
    def relprop(self, R, alpha):
        Z = self.forward(self.X)
        S = safe_divide(R, Z)
        C = self.gradprop(Z, self.X, S)
        if not torch.is_tensor(self.X):
            return [self.X[0] * C[0], self.X[1] * C[1]]
        return self.X * (C[0])


class GELU(nn.GELU, RelProp):
    pass


class Softmax(nn.Softmax, RelProp):
    pass


class LayerNorm(nn.LayerNorm, RelProp):
    pass


class Add(RelPropSimple):
    def forward(self, inputs):
        return torch.add(*inputs)

    def relprop(self, R, alpha):
        Z = self.forward(self.X)
        S = safe_divide(R, Z)
        C = self.gradprop(Z, self.X, S)
        a = self.X[0] * C[0]
        b = self.X[1] * C[1]
        a_sum = a.sum()
        b_sum = b.sum()
        a_fact = safe_divide(a_sum.abs(), a_sum.abs() + b_sum.abs()) * R.sum()
        b_fact = safe_divide(b_sum.abs(), a_sum.abs() + b_sum.abs()) * R.sum()
        a = a * safe_divide(a_fact, a.sum())
        b = b * safe_divide(b_fact, b.sum())
        return [a, b]


class Einsum(RelPropSimple):
    def __init__(self, equation):
        super().__init__()
        self.equation = equation

    def forward(self, *operands):
        return torch.einsum(self.equation, *operands)


class IndexSelect(RelProp):
    def forward(self, inputs, dim, indices):
        self.dim = dim
        self.indices = indices
        return torch.index_select(inputs, dim, indices)

    def relprop(self, R, alpha):
        Z = self.forward(self.X, self.dim, self.indices)
        S = safe_divide(R, Z)
        C = self.gradprop(Z, self.X, S)
        return self.X * (C[0])


class Clone(RelProp):
    def forward(self, input, num):
        self.num = num
        return [input for _ in range(num)]

    def relprop(self, R, alpha):
        Z = [self.X for _ in range(self.num)]
        S = [safe_divide(r, z) for r, z in zip(R, Z, strict=True)]
        C = self.gradprop(Z, self.X, S)[0]
        return self.X * C


class Linear(nn.Linear, RelProp):
    def relprop(self, R, alpha):
        beta = alpha - 1
        pw = torch.clamp(self.weight, min=0)
        nw = torch.clamp(self.weight, max=0)
        px = torch.clamp(self.X, min=0)
        nx = torch.clamp(self.X, max=0)

        def f(w1, w2, x1, x2):
            Z1 = F.linear(x1, w1)
            Z2 = F.linear(x2, w2)
            S1 = safe_divide(R, Z1 + Z2)
            S2 = safe_divide(R, Z1 + Z2)
            C1 = x1 * torch.autograd.grad(Z1, x1, S1)[0]
            C2 = x2 * torch.autograd.grad(Z2, x2, S2)[0]
            return C1 + C2

        activator_relevances = f(pw, nw, px, nx)
        inhibitor_relevances = f(nw, pw, px, nx)
        return alpha * activator_relevances - beta * inhibitor_relevances


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features)
        self.act = GELU()
        self.fc2 = Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def relprop(self, cam, **kwargs):
        cam = self.fc2.relprop(cam, **kwargs)
        cam = self.act.relprop(cam, **kwargs)
        return self.fc1.relprop(cam, **kwargs)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.matmul1 = Einsum("bhid,bhjd->bhij")
        self.matmul2 = Einsum("bhij,bhjd->bhid")
        self.qkv = Linear(dim, dim * 3, bias=True)
        self.proj = Linear(dim, dim)
        self.softmax = Softmax(dim=-1)

    def save_attn_gradients(self, attn_gradients):
        self.attn_gradients = attn_gradients

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # einops' 'b n (qkv h d)'
        dots = self.matmul1([q, k]) * self.scale
        attn = self.softmax(dots)
        self.attn = attn
        attn.register_hook(self.save_attn_gradients)
        out = self.matmul2([attn, v])
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)

    def relprop(self, cam, **kwargs):
        cam = self.proj.relprop(cam, **kwargs)
        cam = cam.reshape(cam.shape[0], cam.shape[1], self.num_heads, -1).transpose(1, 2)
        (cam1, cam_v) = self.matmul2.relprop(cam, **kwargs)
        cam1 /= 2
        cam_v /= 2
        self.attn_cam = cam1
        cam1 = self.softmax.relprop(cam1, **kwargs)
        (cam_q, cam_k) = self.matmul1.relprop(cam1, **kwargs)
        cam_q /= 2
        cam_k /= 2
        cam_qkv = torch.stack([cam_q, cam_k, cam_v]).permute(1, 3, 0, 2, 4).flatten(2)
        return self.qkv.relprop(cam_qkv, **kwargs)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        self.add1 = Add()
        self.add2 = Add()
        self.clone1 = Clone()
        self.clone2 = Clone()

    def forward(self, x):
        x1, x2 = self.clone1(x, 2)
        x = self.add1([x1, self.attn(self.norm1(x2))])
        x1, x2 = self.clone2(x, 2)
        return self.add2([x1, self.mlp(self.norm2(x2))])

    def relprop(self, cam, **kwargs):
        (cam1, cam2) = self.add2.relprop(cam, **kwargs)
        cam2 = self.mlp.relprop(cam2, **kwargs)
        cam2 = self.norm2.relprop(cam2, **kwargs)
        cam = self.clone2.relprop((cam1, cam2), **kwargs)
        (cam1, cam2) = self.add1.relprop(cam, **kwargs)
        cam2 = self.attn.relprop(cam2, **kwargs)
        cam2 = self.norm1.relprop(cam2, **kwargs)
        return self.clone1.relprop((cam1, cam2), **kwargs)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)


class VisionTransformer(nn.Module):
    def __init__(self, patch_size=16, num_classes=1000, embed_dim=192, depth=12, num_heads=3, num_patches=196):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = LayerNorm(embed_dim, eps=1e-6)
        self.head = Linear(embed_dim, num_classes)
        self.pool = IndexSelect()
        self.add = Add()

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.add([x, self.pos_embed])
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x = self.pool(x, dim=1, indices=torch.tensor(0, device=x.device))
        return self.head(x.squeeze(1))

    def relprop(self, cam, start_layer=0, **kwargs):
        """`method="transformer_attribution"` of ViT_LRP.py."""
        cam = self.head.relprop(cam, **kwargs)
        cam = cam.unsqueeze(1)
        cam = self.pool.relprop(cam, **kwargs)
        cam = self.norm.relprop(cam, **kwargs)
        for blk in reversed(self.blocks):
            cam = blk.relprop(cam, **kwargs)
        cams = []
        for blk in self.blocks:
            grad = blk.attn.attn_gradients
            cam = blk.attn.attn_cam
            cam = cam[0].reshape(-1, cam.shape[-1], cam.shape[-1])
            grad = grad[0].reshape(-1, grad.shape[-1], grad.shape[-1])
            cam = grad * cam
            cam = cam.clamp(min=0).mean(dim=0)
            cams.append(cam.unsqueeze(0))
        rollout = compute_rollout_attention(cams, start_layer=start_layer)
        return rollout[:, 0, 1:]


def compute_rollout_attention(all_layer_matrices, start_layer=0):
    """ViT_LRP.py's: the identity added, rows not rescaled."""
    num_tokens = all_layer_matrices[0].shape[1]
    batch_size = all_layer_matrices[0].shape[0]
    eye = torch.eye(num_tokens).expand(batch_size, num_tokens, num_tokens).to(all_layer_matrices[0].device)
    all_layer_matrices = [all_layer_matrices[i] + eye for i in range(len(all_layer_matrices))]
    joint_attention = all_layer_matrices[start_layer]
    for i in range(start_layer + 1, len(all_layer_matrices)):
        joint_attention = all_layer_matrices[i].bmm(joint_attention)
    return joint_attention


def reference_vit(timm_state: dict[str, torch.Tensor], depth: int, num_heads: int) -> VisionTransformer:
    embed_dim = timm_state["cls_token"].shape[-1]
    model = VisionTransformer(
        embed_dim=embed_dim, depth=depth, num_heads=num_heads, num_classes=timm_state["head.weight"].shape[0]
    )
    model.load_state_dict(timm_state)
    return model.eval()


def transformer_attribution(model: VisionTransformer, x: torch.Tensor, index: int) -> torch.Tensor:
    """`LRP.generate_LRP(method="transformer_attribution")` of ViT_explanation_generator.py: (1, 3, H, W) -> (1, p)."""
    output = model(x)
    one_hot = np.zeros((1, output.size()[-1]), dtype=np.float32)
    one_hot[0, index] = 1
    one_hot_vector = one_hot
    one_hot = torch.sum(torch.from_numpy(one_hot).requires_grad_(True) * output)
    model.zero_grad()
    one_hot.backward(retain_graph=True)
    return model.relprop(torch.tensor(one_hot_vector), alpha=1)


def generic_attention(model: VisionTransformer, x: torch.Tensor, index: int) -> torch.Tensor:
    """`generate_relevance` of Transformer_MM_explainability_ViT.ipynb (rules 5 and 6): (1, 3, H, W) -> (p,)."""

    def avg_heads(cam, grad):
        cam = cam.reshape(-1, cam.shape[-2], cam.shape[-1])
        grad = grad.reshape(-1, grad.shape[-2], grad.shape[-1])
        cam = grad * cam
        return cam.clamp(min=0).mean(dim=0)

    output = model(x)
    one_hot = np.zeros((1, output.size()[-1]), dtype=np.float32)
    one_hot[0, index] = 1
    one_hot = torch.sum(torch.from_numpy(one_hot).requires_grad_(True) * output)
    model.zero_grad()
    one_hot.backward(retain_graph=True)
    num_tokens = model.blocks[0].attn.attn.shape[-1]
    R = torch.eye(num_tokens, num_tokens)
    for blk in model.blocks:
        cam = avg_heads(blk.attn.attn, blk.attn.attn_gradients)
        R += torch.matmul(cam, R).detach()
    return R[0, 1:]


def vit_explain_rollout(attentions, discard_ratio, head_fusion):
    """vit-explain's `rollout` (batch of one), rows rescaled with keepdim=True: [(1, heads, T, T)] -> (p,)."""
    result = torch.eye(attentions[0].size(-1))
    with torch.no_grad():
        for attention in attentions:
            if head_fusion == "mean":
                attention_heads_fused = attention.mean(axis=1)
            elif head_fusion == "max":
                attention_heads_fused = attention.max(axis=1)[0]
            else:
                attention_heads_fused = attention.min(axis=1)[0]
            flat = attention_heads_fused.view(attention_heads_fused.size(0), -1)
            _, indices = flat.topk(int(flat.size(-1) * discard_ratio), -1, False)
            indices = indices[indices != 0]
            flat[0, indices] = 0
            eye = torch.eye(attention_heads_fused.size(-1))
            a = (attention_heads_fused + 1.0 * eye) / 2
            a = a / a.sum(dim=-1, keepdim=True)
            result = torch.matmul(a, result)
    return result[0, 0, 1:]


def compute_joint_attention(att_mat, add_residual=True):
    """Abnar's attention_flow, numpy: (layers, T, T) head-averaged attention -> (layers, T, T) joint attention."""
    if add_residual:
        residual_att = np.eye(att_mat.shape[1])[None, ...]
        aug_att_mat = att_mat + residual_att
        aug_att_mat = aug_att_mat / aug_att_mat.sum(axis=-1)[..., None]
    else:
        aug_att_mat = att_mat
    joint_attentions = np.zeros(aug_att_mat.shape)
    layers = joint_attentions.shape[0]
    joint_attentions[0] = aug_att_mat[0]
    for i in np.arange(1, layers):
        joint_attentions[i] = aug_att_mat[i].dot(joint_attentions[i - 1])
    return joint_attentions
