"""KernelSHAP (Lundberg & Lee, 2017, "A Unified Approach to Interpreting Model Predictions", sec. 4.1)."""

from dataclasses import dataclass

import torch

from service.methods.base import Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps
from service.methods.patches import PatchGrid
from service.methods.surrogate import fit_linear

ENDPOINT_WEIGHT = 1e6
"""Weight of the all-kept and none-kept samples, whose Shapley kernel weight is infinite (captum's value)."""


@dataclass(frozen=True)
class KernelShapOptions:
    samples: int = 256
    """Coalitions the surrogate is fitted on (the first two: all patches kept, none kept)."""
    window: int = 32
    """Side of the square patches (the players), in input pixels."""
    fill: Fill = "mean"
    """What a patch outside the coalition is filled with."""
    seed: int = 0
    """Seed of the coalitions, so that a request's answer is reproducible."""


def shapley_coalitions(count: int, samples: int, seed: int) -> torch.Tensor:
    """(samples, M) binary coalitions, drawn as captum's KernelShap draws them: all ones, all zeros, then each a
    size k with p(k) ~ (M - 1) / (k (M - k)) and k players chosen uniformly (the top k of a normal vector), so
    that sampling applies the Shapley kernel. From a generator seeded by `seed`, in captum's order of draws."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sizes = torch.arange(count, dtype=torch.float)
    size_weights = torch.tensor(count - 1) / (sizes * (count - sizes))
    size_weights[0] = 0.0
    coalitions = [torch.ones(count), torch.zeros(count)]
    while len(coalitions) < samples and count > 1:
        size = int(torch.multinomial(size_weights[None], 1, True, generator=generator))
        scores = torch.randn(1, count, generator=generator)
        threshold = torch.kthvalue(scores, count - size).values.item()
        coalitions.append((scores[0] > threshold).float())
    return torch.stack(coalitions[:samples])


class KernelShap(MultiPassMethod):
    """M_ij = phi_P(i, j): the Shapley value of the pixel's patch for S_c, estimated by a linear regression over
    `samples` coalitions of patches (Lundberg & Lee Theorem 2): coalitions sampled by the Shapley kernel
    pi(z) = (M - 1) / (C(M, |z|) |z| (M - |z|)), so fitted with equal weights, the all-kept and none-kept
    coalitions with weight 1e6 (captum's KernelShap); patches outside a coalition are filled. One forward pass
    per coalition and image, shared by its classes. Signed.
    """

    name = "kernel_shap"
    title = "KernelSHAP (patches)"
    paper = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (NeurIPS), sec. 4.1"
    raw_map = "Shapley value of the pixel's patch for logit_c, by regression over `samples` kernel-drawn coalitions"
    aliases = ("KernelShap", "kernelshap", "KernelSHAP")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = KernelShapOptions
    cost = "`samples` forward passes per image"
    sanity_check = True
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: KernelShapOptions, classes: int) -> int:
        return options.samples

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options, grid = inputs.require("runner"), inputs.options, PatchGrid.of(inputs)
        coalitions = shapley_coalitions(grid.count, options.samples, options.seed)
        weights = torch.ones(len(coalitions))
        weights[:2] = ENDPOINT_WEIGHT
        maps = torch.zeros(len(inputs.classes), *inputs.images.shape[-2:], device=inputs.images.device)
        for rows in inputs.rows_by_image():
            logits = yield from grid.logits(runner, inputs.images[rows[0]], coalitions)
            coefficients = fit_linear(coalitions, logits[:, inputs.classes[rows]], weights, ridge=0.0)
            maps[rows] = grid.painted(coefficients, maps)
        return maps
