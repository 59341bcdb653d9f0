"""LIME (Ribeiro et al., 2016, "'Why Should I Trust You?': Explaining the Predictions of Any Classifier")."""

from dataclasses import dataclass

import torch

from service.methods.base import Fill, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps
from service.methods.patches import PatchGrid
from service.methods.surrogate import fit_linear

KERNEL_WIDTH = 0.25
"""Width of the exponential kernel on the cosine distance (the LIME authors' default for images)."""
RIDGE = 1.0
"""Ridge penalty of the surrogate (the LIME authors' default, scikit-learn's `Ridge(alpha=1)`)."""


@dataclass(frozen=True)
class LimeOptions:
    samples: int = 256
    """Perturbed images the surrogate is fitted on."""
    window: int = 32
    """Side of the square patches (the interpretable features), in input pixels."""
    fill: Fill = "mean"
    """What a dropped patch is filled with."""
    seed: int = 0
    """Seed of the samples, so that a request's answer is reproducible."""


def lime_kernel(kept: torch.Tensor) -> torch.Tensor:
    """(n, M) binary samples -> (n,) weights sqrt(exp(-d^2 / w^2)), d the cosine distance of the sample to the
    all-ones vector (the image itself) in the interpretable space, as the `lime` package weighs image samples
    (a sample with no patch kept is at distance 1)."""
    count = kept.shape[1]
    distance = 1 - (kept.sum(dim=1).double() / count).sqrt()
    return torch.exp(-(distance**2) / KERNEL_WIDTH**2).sqrt()


class Lime(MultiPassMethod):
    """M_ij = b_P(i, j): the coefficient of the pixel's patch in a linear surrogate g(z) = c + z . b fitted to
    S_c on `samples` perturbed images. Each sample z in {0, 1}^M keeps every patch with probability 1/2 (captum's
    Lime sampling, the draws of a generator seeded by `seed`) and fills the others; the fit is weighted ridge
    regression (alpha 1) with weights sqrt(exp(-d(1, z)^2 / 0.25^2)), d the cosine distance (Ribeiro et al.
    eq. 1-2 with the LIME authors' image defaults; captum's own default is a Lasso with alpha 0.01 and a kernel
    on the input space). One forward pass per sample and image, shared by its classes.
    """

    name = "lime"
    title = "LIME (patches)"
    paper = 'Ribeiro et al. 2016, "Why Should I Trust You?": Explaining the Predictions of Any Classifier (KDD)'
    raw_map = "coefficient of the pixel's patch in a weighted ridge fit of logit_c on `samples` random patch masks"
    aliases = ("Lime", "LIME")
    needs = frozenset({Need.EXTRA_PASSES})
    options_type = LimeOptions
    cost = "`samples` forward passes per image"
    sanity_check = True
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: LimeOptions, classes: int) -> int:
        return options.samples

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner, options, grid = inputs.require("runner"), inputs.options, PatchGrid.of(inputs)
        maps = torch.zeros(len(inputs.classes), *inputs.images.shape[-2:], device=inputs.images.device)
        for rows in inputs.rows_by_image():
            generator = torch.Generator(device="cpu").manual_seed(options.seed)
            kept = torch.bernoulli(torch.full((options.samples, grid.count), 0.5), generator=generator)
            logits = yield from grid.logits(runner, inputs.images[rows[0]], kept)
            coefficients = fit_linear(kept, logits[:, inputs.classes[rows]], lime_kernel(kept), RIDGE)  # (r, M)
            maps[rows] = grid.painted(coefficients, maps)
        return maps
