"""Eigen-CAM (Muhammad & Yeasin, 2020, "Eigen-CAM: Class Activation Map using Principal Components")."""

import torch

from service.methods.base import Method, MethodInputs, Need


class EigenCAM(Method):
    """The projection of the (centred) activations on their first principal component (eq. 5-6).

    Class-independent: no gradient, no class. SVD leaves the sign open; it is chosen so that the largest
    magnitude is positive (the sign correction of Seg-Eigen-CAM, eq. 13).
    """

    name = "eigen_cam"
    title = "Eigen-CAM"
    paper = "Muhammad & Yeasin 2020, Eigen-CAM (IJCNN)"
    raw_map = "projection of the centred activations (hw x C) on their first right singular vector; signed"
    aliases = ("eigencam", "EigenCAM")
    needs = frozenset({Need.ACTIVATIONS})
    reads_layer_only = True
    sanity_check = False

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w)."""
        activations = inputs.require("activations").double()
        n, c, h, w = activations.shape
        flat = activations.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
        flat = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        projection = (flat @ vh[:, 0, :, None]).squeeze(-1)  # (N, hw)
        flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
        projection = torch.where(flip[:, None], -projection, projection)
        return projection.reshape(n, h, w).float()
