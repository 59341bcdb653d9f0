"""Typed answers: the `api_schemas` wire models, with helpers to decode what they carry.

    Explanation.map_array()        the raw map as a numpy float32 array (from either map encoding)
    Explanation.overlay_bytes()    the overlay file (PNG, JPEG or WebP bytes); overlay_image() as a PIL image
    Segmentation.mask_image()      a segmentation model's predicted classes as a PIL palette image
    Segmentation.mask_array()      the same as a numpy uint8 array of class indices (height, width)
    VisualizationResult.image()    the feature visualization as a PIL image
    JobStatus.finished             whether the job has ended

numpy and Pillow are imported when a helper needs them, so that the models load without them.
"""

import base64
import io
from typing import TYPE_CHECKING, Any

import api_schemas
from api_schemas import features as wire_features
from api_schemas import jobs as wire_jobs

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

FINAL_STATES = ("succeeded", "failed", "cancelled")


def decode_map(data: api_schemas.MapData) -> "np.ndarray":
    """A raw map as a float32 array of `data.shape`, from nested lists or base64 of little-endian float32."""
    import numpy as np

    if data.data_base64 is not None:
        return np.frombuffer(base64.b64decode(data.data_base64), dtype="<f4").reshape(data.shape).astype(np.float32)
    if data.data is None:
        raise ValueError("this map carries no data")
    return np.asarray(data.data, dtype=np.float32).reshape(data.shape)


def _open_image(b64: str) -> "Image.Image":
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


class Explanation(api_schemas.Explanation):
    def map_array(self) -> "np.ndarray":
        """The raw map `(h, w)`, float32 (needs `include=map`)."""
        if self.map is None:
            raise ValueError("the answer has no map: ask with include=map")
        return decode_map(self.map)

    @property
    def overlay_format(self) -> str | None:
        for name in ("png", "jpeg", "webp"):
            if getattr(self, f"overlay_{name}") is not None:
                return name
        return None

    def overlay_bytes(self) -> bytes:
        """The overlay file as sent (PNG, JPEG or WebP; see `overlay_format`)."""
        encoded = self.overlay_png or self.overlay_jpeg or self.overlay_webp
        if encoded is None:
            raise ValueError("the answer has no overlay: ask with include=overlay")
        return base64.b64decode(encoded)

    def overlay_image(self) -> "Image.Image":
        """The overlay as a PIL image."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.overlay_bytes()))
        image.load()
        return image


class Segmentation(api_schemas.Segmentation):
    def mask_image(self) -> "Image.Image":
        """The mask as a PIL image in palette mode: each pixel's value is its class index."""
        return _open_image(self.mask_png)

    def mask_array(self) -> "np.ndarray":
        """The class index of each pixel, (height, width) uint8."""
        import numpy as np

        return np.asarray(self.mask_image(), dtype=np.uint8)


class PredictResponse(api_schemas.PredictResponse):
    segmentation: Segmentation | None = None


class ExplainResponse(api_schemas.ExplainResponse):
    segmentation: Segmentation | None = None
    explanations: list[Explanation]

    def explanation(self, method: str, class_: int | str | None = None) -> Explanation:
        """The explanation of `method` (and of a class index or label, if given)."""
        for item in self.explanations:
            if item.method == method and (class_ is None or class_ in (item.class_.index, item.class_.label)):
                return item
        raise KeyError((method, class_))


class VisualizationResult(wire_jobs.VisualizationResult):
    def image_bytes(self) -> bytes:
        return base64.b64decode(self.image_png)

    def image(self) -> "Image.Image":
        return _open_image(self.image_png)


class JobStatus(wire_jobs.JobStatus):
    result: ExplainResponse | VisualizationResult | None = None  # type: ignore[assignment]

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES


class ActivationsResponse(wire_features.ActivationsResponse):
    def grid_image(self) -> "Image.Image":
        return _open_image(self.grid_png)


class FiltersResponse(wire_features.FiltersResponse):
    def grid_image(self) -> "Image.Image":
        return _open_image(self.grid_png)


MethodInfo = api_schemas.MethodInfo
ModelInfo = api_schemas.ModelInfo
TopClass = api_schemas.TopClass


def parse_job(document: Any) -> JobStatus:
    return JobStatus.model_validate(document)
