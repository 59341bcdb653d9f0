"""KPCA-CAM (Karmani et al. 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel
PCA"): Eigen-CAM with kernel PCA, which captures non-linear structure of the activations."""

import torch

from service.methods.base import Method, MethodInputs, Need
from service.methods.projections import centred_pixels, sign_corrected


def sigmoid_kernel_projection(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h, w): the first kernel principal component of the centred positions.

    K = tanh(gamma X X^T + 1) with gamma = 1/C (scikit-learn's sigmoid kernel and default, as the paper's code),
    centred in feature space (K - 1K - K1 + 1K1); the component is sqrt(lambda_1) v_1, the sign making its largest
    magnitude positive (scikit-learn's `svd_flip`).
    """
    n, c, h, w = maps.shape
    x = centred_pixels(maps)  # (N, M, C)
    kernel = torch.tanh(x @ x.transpose(1, 2) / c + 1)
    kernel = kernel - kernel.mean(dim=1, keepdim=True) - kernel.mean(dim=2, keepdim=True)
    kernel = kernel + kernel.mean(dim=(1, 2), keepdim=True)
    eigenvalues, eigenvectors = torch.linalg.eigh(kernel)  # ascending
    component = eigenvectors[:, :, -1] * eigenvalues[:, -1:].clamp(min=0).sqrt()
    return sign_corrected(component).reshape(n, h, w).float()


class KPCACAM(Method):
    """The projection of the activations (positions x channels) on their first kernel principal component.

    Class-independent like Eigen-CAM: no gradient, no class.
    """

    name = "kpca_cam"
    title = "KPCA-CAM"
    paper = "Karmani et al. 2024, KPCA-CAM (arXiv:2410.00267)"
    raw_map = "first kernel principal component of the centred activations (hw x C), sigmoid kernel, gamma 1/C"
    aliases = ("kpcacam", "KPCA_CAM", "KPCACAM")
    needs = frozenset({Need.ACTIVATIONS})
    reads_layer_only = True
    sanity_check = False

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w)."""
        return sigmoid_kernel_projection(inputs.require("activations"))
