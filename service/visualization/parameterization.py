"""The image being optimised: Fourier-space or pixel parameters, decorrelated colour, a sigmoid to [0, 1].

Lucid's recipe (Olah et al. 2017, "Feature Visualization", section "Preconditioning and Parameterization";
`lucid/optvis/param/spatial.py` and `color.py`):

- Fourier space (`fft_image`): the parameters are the real and imaginary parts of the image's rfft2 spectrum,
  scaled by `1 / max(f, 1 / max(h, w)) ** decay` (decay 1), so that all frequencies start with about equal
  energy and gradient steps do not favour high-frequency noise; `irfft2` (orthonormal) and a division by 4 give
  the image.
- Decorrelated colour: the three channels are mixed by the square root of ImageNet's colour covariance
  (`color_correlation_svd_sqrt`, normalised by its largest column norm), so that each parameter channel moves a
  decorrelated colour direction.
- A sigmoid maps the result to valid RGB in [0, 1].

Initial parameters are normal with sd 0.01, drawn from the visualization's own generator.
"""

import torch

INIT_SD = 0.01
DECAY_POWER = 1.0
FOURIER_DIVISOR = 4.0  # Lucid's constant; larger values reduce saturation

COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


def spectrum_scale(height: int, width: int, decay_power: float = DECAY_POWER) -> torch.Tensor:
    """`1 / max(f, 1 / max(h, w)) ** decay` for each rfft2 frequency f: (h, w // 2 + 1)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    frequencies = torch.sqrt(fx * fx + fy * fy)
    return (1.0 / frequencies.clamp(min=1.0 / max(height, width)) ** decay_power).float()


def decorrelate_colors(image: torch.Tensor) -> torch.Tensor:
    """(3, h, w) decorrelated colour coordinates -> (3, h, w) RGB (before the sigmoid)."""
    return torch.einsum("cj,jhw->chw", COLOR_CORRELATION_NORMALIZED.to(image.device), image)


class ImageParameterization:
    """How one visualization's parameters become an RGB image of (height, width)."""

    def __init__(self, height: int, width: int, *, fourier: bool, decorrelate: bool) -> None:
        self.height = height
        self.width = width
        self.fourier = fourier
        self.decorrelate = decorrelate
        self._scale = spectrum_scale(height, width) if fourier else None

    @property
    def shape(self) -> tuple[int, ...]:
        """The parameters' shape: (3, h, w // 2 + 1, 2) (real, imaginary) in Fourier space, else (3, h, w)."""
        if self.fourier:
            return (3, self.height, self.width // 2 + 1, 2)
        return (3, self.height, self.width)

    def initial(self, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Fresh parameters, normal with sd 0.01 from `generator` (on the CPU, so every device starts alike),
        as a leaf on `device` that requires grad."""
        values = torch.randn(self.shape, generator=generator) * INIT_SD
        return values.to(device).requires_grad_()

    def render(self, parameters: torch.Tensor) -> torch.Tensor:
        """Parameters -> (3, h, w) RGB in [0, 1], differentiable."""
        if self._scale is not None:
            scale = self._scale.to(parameters.device)[..., None]
            spectrum = torch.view_as_complex(parameters * scale)
            image = torch.fft.irfftn(spectrum, s=(self.height, self.width), norm="ortho") / FOURIER_DIVISOR
        else:
            image = parameters
        if self.decorrelate:
            image = decorrelate_colors(image)
        return torch.sigmoid(image)
