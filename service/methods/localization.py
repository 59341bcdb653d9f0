"""Weakly supervised localization (Zhou et al. 2016, sec. 4.1): the box of the largest connected region of the
map above a fraction of its maximum, in the coordinates of the image as sent. Runs in the CPU pool."""

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from api_schemas import BoundingBox
from service.imaging.encoding import upsample_map

GRID_LONG_SIDE = 512


def localize(
    raw_map: np.ndarray, image_size: tuple[int, int], threshold: float, extent: Sequence[float] = (1.0, 1.0)
) -> BoundingBox | None:
    """Box of `raw_map` (h, w) over an image of `image_size` (width, height), which covers the map's top-left
    `extent` (`upsample_map`); None for an all-zero map.

    The map is upsampled (bilinear) to a grid of the image's aspect ratio, at most 512 px on its long side,
    thresholded at `threshold` x its maximum, and the largest 4-connected component is boxed; the box is
    scaled to the image's pixels, rounded outwards.
    """
    width, height = image_size
    scale = min(1.0, GRID_LONG_SIDE / max(width, height))
    grid_w, grid_h = max(1, round(width * scale)), max(1, round(height * scale))
    heat = upsample_map(raw_map, (grid_w, grid_h), extent)
    peak = float(heat.max())
    if peak <= 0:
        return None
    labels, count = ndimage.label(heat >= threshold * peak)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    rows, cols = np.nonzero(labels == 1 + int(sizes.argmax()))
    return BoundingBox(
        x0=math.floor(cols.min() * width / grid_w),
        y0=math.floor(rows.min() * height / grid_h),
        x1=min(width, math.ceil((cols.max() + 1) * width / grid_w)),
        y1=min(height, math.ceil((rows.max() + 1) * height / grid_h)),
    )
