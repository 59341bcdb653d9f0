"""The image parameterization against Lucid's formulas, recomputed with numpy."""

import numpy as np
import pytest
import torch

from service.visualization.parameterization import (
    COLOR_CORRELATION_NORMALIZED,
    ImageParameterization,
    spectrum_scale,
)


@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 10), (12, 9)])
def test_spectrum_scale_is_lucids(height, width):
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + 1]
    expected = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(height, width))
    np.testing.assert_allclose(spectrum_scale(height, width).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(16, 16), (15, 22)])
def test_a_fourier_image_is_the_inverse_rfft2_of_the_scaled_spectrum(height, width):
    parameterization = ImageParameterization(height, width, fourier=True, decorrelate=False)
    parameters = parameterization.initial(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert parameters.shape == (3, height, width // 2 + 1, 2) and parameters.requires_grad
    spectrum = parameters.detach().numpy()
    scale = spectrum_scale(height, width).numpy()[None]
    pixels = np.fft.irfft2((spectrum[..., 0] + 1j * spectrum[..., 1]) * scale, s=(height, width), norm="ortho") / 4
    np.testing.assert_allclose(
        parameterization.render(parameters).detach().numpy(), 1 / (1 + np.exp(-pixels)), atol=1e-6
    )


def test_the_dc_coefficient_alone_gives_a_flat_image():
    parameterization = ImageParameterization(8, 8, fourier=True, decorrelate=False)
    parameters = torch.zeros(parameterization.shape)
    parameters[:, 0, 0, 0] = torch.tensor([1.0, 0.0, -1.0])
    image = parameterization.render(parameters)
    for channel in image:
        assert torch.allclose(channel, channel[0, 0].expand(8, 8))
    assert image[0, 0, 0] > 0.5 and image[1, 0, 0] == 0.5 and image[2, 0, 0] < 0.5


def test_colour_decorrelation_mixes_channels_by_lucids_normalised_matrix():
    assert COLOR_CORRELATION_NORMALIZED.norm(dim=0).max() == pytest.approx(1.0)
    parameterization = ImageParameterization(4, 5, fourier=False, decorrelate=True)
    parameters = parameterization.initial(torch.Generator().manual_seed(1), torch.device("cpu"))
    assert parameters.shape == (3, 4, 5)
    expected = torch.sigmoid(torch.einsum("cj,jhw->chw", COLOR_CORRELATION_NORMALIZED, parameters))
    torch.testing.assert_close(parameterization.render(parameters), expected)
    plain = ImageParameterization(4, 5, fourier=False, decorrelate=False)
    torch.testing.assert_close(plain.render(parameters), torch.sigmoid(parameters))


def test_initial_parameters_come_from_the_generator_with_sd_001():
    parameterization = ImageParameterization(64, 64, fourier=False, decorrelate=False)
    first = parameterization.initial(torch.Generator().manual_seed(5), torch.device("cpu"))
    again = parameterization.initial(torch.Generator().manual_seed(5), torch.device("cpu"))
    other = parameterization.initial(torch.Generator().manual_seed(6), torch.device("cpu"))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert float(first.detach().std()) == pytest.approx(0.01, rel=0.05)
