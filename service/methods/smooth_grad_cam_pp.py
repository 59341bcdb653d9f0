"""Smooth Grad-CAM++ (Omeiza et al., 2019, "Smooth Grad-CAM++: An Enhanced Inference Level Visualization
Technique for Deep Convolutional Neural Network Models"), as torch-cam 0.5.0 computes it."""

from dataclasses import dataclass

import torch

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need, weighted_sum
from service.methods.passes import Steps

EPS = 1e-8


@dataclass(frozen=True)
class SmoothGradCAMPlusPlusOptions:
    samples: int = 4
    """Noisy copies of the image (torch-cam's default)."""
    sigma: float = 0.3
    """Standard deviation of the Gaussian noise added to the normalised input (torch-cam's default)."""
    seed: int = 0
    """Seed of the noise, so that an answer is reproducible."""


class SmoothGradCAMPlusPlus(MultiPassMethod):
    """Grad-CAM++ with the derivatives averaged over noisy inputs x + N(0, sigma^2), i = 1..n:

    D2 = (1/n) sum_i g_i^2,  D3 = (1/n) sum_i g_i^3,  alpha^k_ab = D2^k_ab / (2 D2^k_ab + sum_ij A^k_ij D3^k_ij),
    w_k = sum_ab alpha^k_ab ReLU(g_n^k_ab),  L = ReLU(sum_k w_k A_n^k),

    with g_i = d logit_c / d A at the i-th noisy input and A the activations of the image. As torch-cam's code
    (the reference), the weights use the last noisy sample's gradient g_n and the map its activations A_n, and
    the denominator sums A D3 over positions; the paper (and torch-cam's docstring) average the first derivative
    too and multiply sum_ij A^k_ij by D3^k_ab at each position, as Grad-CAM++'s eq. 19.
    """

    name = "smooth_grad_cam_pp"
    title = "Smooth Grad-CAM++"
    paper = "Omeiza et al. 2019, Smooth Grad-CAM++ (arXiv:1908.01224), as torch-cam 0.5.0"
    raw_map = "ReLU(sum_k w_k A_n^k), Grad-CAM++ weights from derivatives averaged over `samples` noisy inputs"
    aliases = ("smoothgradcampp", "SmoothGradCAMpp", "SmoothGradCAM++", "smooth_grad_cam++")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    options_type = SmoothGradCAMPlusPlusOptions
    cost = "the shared forward pass + `samples` forward passes with a backward pass to the layer, per class"
    pass_cost = GRADIENT_PASS_COST
    sanity_check = True

    def extra_passes(
        self, channels: int, input_size: tuple[int, int], options: SmoothGradCAMPlusPlusOptions, classes: int
    ) -> int:
        return options.samples * classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, C, h, w) activations, (N, 3, H, W) images -> (N, h, w)."""
        activations, runner, options = inputs.require("activations"), inputs.require("runner"), inputs.options
        layer = inputs.layer
        if layer is None:
            raise RuntimeError("smooth_grad_cam_pp needs a layer")
        maps = []
        for image, original, class_index in zip(inputs.images, activations, inputs.classes.tolist(), strict=True):
            generator = torch.Generator(device="cpu").manual_seed(options.seed)
            noise = torch.stack([torch.randn(image.shape, generator=generator) for _ in range(options.samples)])
            noisy = image[None] + noise.to(image.device) * options.sigma
            noisy_activations, gradients = yield from runner.layer_gradients(noisy, layer, class_index)
            second, third = gradients.pow(2).mean(dim=0), gradients.pow(3).mean(dim=0)  # (C, h, w)
            alpha = second / (2 * second + (third * original).sum(dim=(1, 2), keepdim=True) + EPS)
            weights = (alpha * torch.relu(gradients[-1])).sum(dim=(1, 2))  # (C,)
            maps.append(torch.relu(weighted_sum(weights[None], noisy_activations[-1:]))[0])
        return torch.stack(maps)
