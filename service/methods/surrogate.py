"""The weighted linear surrogate models of LIME and KernelSHAP, fitted as scikit-learn fits them (captum's
reference uses scikit-learn), in float64 on the CPU: the problems are small (samples x features)."""

import torch


def fit_linear(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, ridge: float) -> torch.Tensor:
    """Coefficients b of min_b,c sum_k w_k (y_k - c - z_k . b)^2 + ridge |b|^2 for each column of targets.

    As scikit-learn's `Ridge(alpha=ridge)` / `LinearRegression()` with `sample_weight`: the intercept by centring
    on the weighted means, rows scaled by sqrt(w); without ridge the least-squares solution of minimum norm.

    Args:
        features: (n, M) interpretable samples z_k.
        targets: (n, R) outputs y_k, one column per class.
        weights: (n,) sample weights w_k.

    Returns:
        (R, M) coefficients.
    """
    z, y, w = (t.detach().to("cpu", torch.float64) for t in (features, targets, weights))
    z_centred = z - (w[:, None] * z).sum(dim=0) / w.sum()
    y_centred = y - (w[:, None] * y).sum(dim=0) / w.sum()
    root = w.sqrt()[:, None]
    a, b = z_centred * root, y_centred * root
    if ridge > 0:
        gram = a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype)
        return torch.linalg.solve(gram, a.T @ b).T
    return torch.linalg.lstsq(a, b, driver="gelsd").solution.T
