"""Principal-component projections of feature maps, shared by Eigen-CAM, Eigen-Grad-CAM, KPCA-CAM and the
`eigen_smooth` option of the layer methods."""

import torch


def sign_corrected(projection: torch.Tensor) -> torch.Tensor:
    """(N, M) -> (N, M), each row flipped so that its largest magnitude is positive (Seg-Eigen-CAM eq. 13; the
    same rule as scikit-learn's `svd_flip` of an eigenvector): a principal component's sign is arbitrary."""
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    return torch.where(flip[:, None], -projection, projection)


def centred_pixels(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, hw, C): one row per position, each channel centred over the positions (float64)."""
    n, c, h, w = maps.shape
    flat = maps.double().reshape(n, c, h * w).transpose(1, 2)
    return flat - flat.mean(dim=1, keepdim=True)


def principal_projection(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h, w): the centred maps projected on their first right singular vector, sign
    corrected."""
    n, _, h, w = maps.shape
    flat = torch.nan_to_num(centred_pixels(maps))
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)
    projection = (flat @ vh[:, 0, :, None]).squeeze(-1)  # (N, hw)
    return sign_corrected(projection).reshape(n, h, w).float()
