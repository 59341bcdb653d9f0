"""PNG encoding of visualizations, feature maps and filters: numpy and Pillow only, for the CPU thread pool.

    encode_image_png       (3, h, w) in [0, 1]            -> one image
    encode_feature_map_grid (n, h, w) raw maps             -> a grid, each map min-max normalised and colourised
    encode_filter_grid     (O, 3, k, k) kernels in [0, 1] -> a grid of RGB kernels

Small tiles are enlarged by an integer factor (nearest neighbour) so that every cell is at least
`MIN_TILE_PX` wide; cells are separated by a white gap.
"""

import io
import math

import numpy as np
from PIL import Image

from service.imaging.encoding import colormap_table

MIN_TILE_PX = 48
GAP_PX = 2
DEFAULT_MAP_COLORMAP = "viridis"


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(3, h, w) float in [0, 1] -> (h, w, 3) uint8, rounded to the nearest level."""
    return np.ascontiguousarray((np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8).transpose(1, 2, 0))


def encode_image_png(image: np.ndarray) -> bytes:
    """(3, h, w) float in [0, 1] -> PNG bytes of an (h, w) RGB image; the same array gives the same bytes."""
    return _png(to_rgb_uint8(image))


def encode_feature_map_grid(
    maps: np.ndarray, colormap: str = DEFAULT_MAP_COLORMAP, columns: int | None = None
) -> bytes:
    """(n, h, w) raw maps -> PNG of a grid, each map min-max normalised on its own (a constant map is all low)
    and colourised, in the given order, row by row."""
    maps = np.nan_to_num(maps.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    normalised = np.where(span > 1e-12, (maps - low) / np.where(span > 1e-12, span, 1.0), 0.0)
    levels = (normalised * 255).round().astype(np.uint8)
    return _png(_grid(colormap_table(colormap)[levels], columns))


def encode_filter_grid(kernels: np.ndarray, columns: int | None = None) -> bytes:
    """(O, 3, k, k) kernels in [0, 1] -> PNG of a grid of (k, k) RGB tiles, in the given order."""
    tiles = (np.clip(kernels, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    return _png(_grid(tiles, columns))


def _grid(tiles: np.ndarray, columns: int | None) -> np.ndarray:
    """(n, h, w, 3) uint8 -> one (rows * cell, columns * cell, 3) image, enlarged and separated by gaps."""
    count, height, width, _ = tiles.shape
    if count == 0:
        raise ValueError("a grid needs at least one tile")
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    factor = max(1, math.ceil(MIN_TILE_PX / max(height, width)))
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    cell_h, cell_w = height * factor + GAP_PX, width * factor + GAP_PX
    canvas = np.full((rows * cell_h - GAP_PX, columns * cell_w - GAP_PX, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * cell_h, (i % columns) * cell_w
        canvas[top : top + height * factor, left : left + width * factor] = tile
    return canvas


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
