"""Lucid's standard transforms as one affine resampling per image, each drawn from its own generator."""

import math

import pytest
import torch

from model_store import Preprocessing
from service.visualization.transforms import (
    ANGLES,
    JITTER_FIRST,
    JITTER_LAST,
    PAD,
    SCALES,
    TransformDraw,
    affine_theta,
    draw_transform,
    to_model_input,
    transform_batch,
)

IDENTITY = TransformDraw((0, 0), 1.0, 0.0, (0, 0))


def picture(height: int = 20, width: int = 30, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_the_identity_draw_only_pads_with_grey():
    image = picture()
    out = transform_batch(image, [IDENTITY])
    assert out.shape == (1, 3, 20 + 2 * PAD, 30 + 2 * PAD)
    torch.testing.assert_close(out[..., PAD:-PAD, PAD:-PAD], image)
    torch.testing.assert_close(out[..., :PAD, :], torch.full_like(out[..., :PAD, :], 0.5))
    torch.testing.assert_close(out[..., :, -PAD:], torch.full_like(out[..., :, -PAD:], 0.5))


def test_jitters_shift_by_whole_pixels_right_and_down():
    image = picture()
    out = transform_batch(image, [TransformDraw((3, 5), 1.0, 0.0, (2, 1))])
    torch.testing.assert_close(out[..., PAD + 6 : PAD + 6 + 20, PAD + 5 : PAD + 5 + 30], image)


def test_a_quarter_turn_is_counter_clockwise():
    image = picture(16, 16)
    out = transform_batch(image, [TransformDraw((0, 0), 1.0, 90.0, (0, 0))])
    expected = torch.rot90(transform_batch(image, [IDENTITY]), k=1, dims=(-2, -1))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_theta_composes_shift_scale_rotation_shift_about_the_centre():
    height, width = 40, 60
    draw = TransformDraw((3, 5), 1.1, 30.0, (2, 1))
    theta = affine_theta(draw, height, width).double()
    angle = math.radians(draw.angle)
    rotate = torch.tensor([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]], dtype=torch.double)
    half = torch.tensor([width / 2, height / 2], dtype=torch.double)
    for source in ([0.0, 0.0], [7.5, -3.0], [-20.0, 12.5]):
        p_in = torch.tensor(source, dtype=torch.double)
        p_out = rotate @ (draw.scale * (p_in + torch.tensor(draw.first_shift))) + torch.tensor(draw.last_shift)
        sampled = theta @ torch.cat([p_out / half, torch.ones(1, dtype=torch.double)])
        torch.testing.assert_close(sampled, p_in / half)


def test_draws_are_lucids_choices_and_follow_the_seed():
    draws = [draw_transform(torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0] == draws[1]
    generator = torch.Generator().manual_seed(4)
    many = [draw_transform(generator) for _ in range(400)]
    assert {d.scale for d in many} == set(SCALES) and {d.angle for d in many} == set(ANGLES)
    assert {d.first_shift[0] for d in many} == set(range(JITTER_FIRST))
    assert {d.last_shift[1] for d in many} == set(range(JITTER_LAST))
    assert sum(d.angle == 0 for d in many) > 3 * sum(d.angle == 5 for d in many)  # 0 weighted 6 / 26


def test_each_row_of_a_batch_is_transformed_by_its_own_draw():
    images = torch.cat([picture(seed=0), picture(seed=1)])
    draws = [TransformDraw((1, 2), 0.9, -7.0, (3, 0)), TransformDraw((6, 0), 1.08, 10.0, (0, 2))]
    together = transform_batch(images, draws)
    for row in range(2):
        torch.testing.assert_close(together[row : row + 1], transform_batch(images[row : row + 1], [draws[row]]))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_model_input_is_resized_and_normalised(interpolation):
    preprocessing = Preprocessing((24, 24), (0.5, 0.4, 0.3), (0.5, 0.2, 0.1), interpolation)
    grey = torch.full((2, 3, 44, 30), 0.5)
    inputs = to_model_input(grey, preprocessing)
    assert inputs.shape == (2, 3, 24, 24)
    for channel, value in enumerate([0.0, 0.5, 2.0]):
        torch.testing.assert_close(inputs[:, channel], torch.full((2, 24, 24), value))
