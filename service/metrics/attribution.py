"""What Quantus's metrics are computed on, and how each is described (numpy only; runs in the CPU pool).

The attribution `a` of an explanation is its raw map upsampled to the image's size in the model's input
(`attribution`); a metric prepares it as Quantus 0.6.0 does for a batch of one (`prepared`): `normalise`
divides by the largest absolute value (`normalise_by_max`, none for an all-zero map), then `abs` takes absolute
values. Quantus normalises a batch by the batch's largest value, so its values for a batch of several
explanations differ where a metric is not scale-invariant; compare one explanation per call.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.imaging.encoding import resize_map

Parameters = dict[str, float | bool | str]
Score = Callable[[np.ndarray, np.ndarray | None, Parameters], float]
"""(attribution (H, W), region (H, W) bool or None, parameters) -> the metric's value (nan where undefined)."""


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    group: str
    paper: str
    definition: str
    better: str  # "higher" or "lower"
    score: Score | None
    """Its value from the attribution (None for a metric that runs through the model, in the worker)."""
    parameters: Parameters
    """Its parameters under Quantus's names, at Quantus 0.6.0's defaults."""
    needs_region: bool = False
    """Whether it scores the attribution against where the object is (the request's `target_box`)."""
    passes: "Callable[[tuple[int, int], Parameters], int] | None" = None
    """Forward passes per explanation through the model on an input of (height, width) with these parameters,
    for the cost bound (None: from the map alone)."""
    cost: str = "none: the map alone"

    def passes_for(self, input_size: tuple[int, int], parameters: Parameters | None = None) -> int:
        """Forward passes per explanation on a model input of `input_size` (height, width)."""
        return 0 if self.passes is None else self.passes(input_size, parameters or self.parameters)

    def with_values(self, values: dict[str, object]) -> Parameters:
        """Its parameters, those of them given in `values` (not None) in place of the defaults."""
        return {
            name: values[name] if values.get(name) is not None else default for name, default in self.parameters.items()
        }  # type: ignore[misc]

    @property
    def runs_model(self) -> bool:
        """Whether it runs through the model (in the worker, `service.metrics.faithfulness`), not from the map."""
        return self.score is None


def attribution(raw: np.ndarray, size: tuple[int, int], extent: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """(h, w) raw map -> the (height, width) attribution over an image of `size` (width, height) in the model's
    input, bilinear (half-pixel centres, as `F.interpolate(align_corners=False)`), no normalisation; the image
    covers the map's top-left `extent` (`service.imaging.encoding.upsample_map`)."""
    return resize_map(raw, size, extent).astype(np.float64)


def box_region(box: Sequence[float], image_size: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The (height, width) = `shape` mask of a box (x0, y0, x1, y1) in the pixels of an image of `image_size`
    (width, height): the attribution's pixels whose centres lie inside the box."""
    height, width = shape
    x0, y0, x1, y1 = box
    columns = (np.arange(width) + 0.5) * image_size[0] / width
    rows = (np.arange(height) + 0.5) * image_size[1] / height
    return ((rows >= y0) & (rows < y1))[:, None] & ((columns >= x0) & (columns < x1))[None, :]


def prepared(a: np.ndarray, parameters: Parameters) -> np.ndarray:
    """The flattened attribution as Quantus prepares it: normalised by its largest absolute value, then abs."""
    a = np.asarray(a, dtype=np.float64).ravel()
    if parameters["normalise"] and not np.all(a == 0.0):
        a = a / np.max(np.abs(a))
    return np.abs(a) if parameters["abs"] else a
