"""PNG encoding with numpy and Pillow: a visualization, grids of feature maps and of filters."""

import io

import numpy as np
import torch
from PIL import Image

from service.imaging.encoding import colormap_table
from service.visualization import encode_feature_map_grid, encode_filter_grid, encode_image_png
from service.visualization.png import GAP_PX


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_png_is_the_image():
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0)).numpy()
    png = encode_image_png(image)
    assert encode_image_png(image.copy()) == png
    decoded = decode(png)
    assert decoded.shape == (20, 30, 3)
    expected = (image.transpose(1, 2, 0) * 255).round()
    assert np.array_equal(decoded, expected.astype(np.uint8))


def test_the_feature_map_grid_normalises_and_colours_each_map():
    maps = np.stack([np.arange(49, dtype=np.float32).reshape(7, 7) * (i + 1) - i for i in range(5)])
    maps[4] = 3.0  # constant
    grid = decode(encode_feature_map_grid(maps))
    cell = 7 * 7  # 7 x 7 maps enlarged 7 times to reach 48 px
    assert grid.shape == (2 * cell + GAP_PX, 3 * cell + 2 * GAP_PX, 3)  # 5 maps: 3 columns, 2 rows
    viridis = colormap_table("viridis")
    for i in range(4):
        top, left = (i // 3) * (cell + GAP_PX), (i % 3) * (cell + GAP_PX)
        assert tuple(grid[top, left]) == tuple(viridis[0]) and tuple(grid[top + cell - 1, left + cell - 1]) == tuple(
            viridis[255]
        )
    assert np.all(grid[cell + GAP_PX :, cell + GAP_PX : 2 * cell + GAP_PX] == viridis[0])  # constant: lowest
    assert np.all(grid[:, cell : cell + GAP_PX] == 255)  # white gaps
    assert np.all(grid[cell + GAP_PX :, 2 * (cell + GAP_PX) :] == 255)  # the empty sixth cell


def test_the_filter_grid_shows_each_kernel_in_rgb():
    kernels = torch.rand(3, 3, 3, 3, generator=torch.Generator().manual_seed(3))
    grid = decode(encode_filter_grid(kernels.numpy(), columns=3))
    factor = 16  # 3 px kernels enlarged to 48 px
    assert grid.shape == (3 * factor, 3 * 3 * factor + 2 * GAP_PX, 3)
    second = grid[:, 3 * factor + GAP_PX : 6 * factor + GAP_PX]
    expected = (kernels[1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(second[::factor, ::factor], expected)
