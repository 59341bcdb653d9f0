"""Wire models of `POST /v1/models/{model}/explain` and `/predict`."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MethodName = Literal["cam", "grad_cam", "grad_cam_pp"]
Colormap = Literal["jet", "viridis", "inferno", "turbo"]
Include = Literal["map", "overlay", "logits"]


class ExplainParameters(BaseModel):
    """Parameters of an explain request: JSON fields, form fields or query parameters (lists may repeat)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str | list[str] | None = Field(
        default=None, description="One or several methods (see `GET /v1/methods`); default `grad_cam`."
    )
    # Strict: a JSON `true` is not class 1. Form and query values are strings and take the `str` branch.
    class_: StrictInt | str | list[StrictInt | str] | None = Field(
        default=None,
        alias="class",
        description="One or several classes, by index or label (case-insensitive); default the top-1 class.",
    )
    top_k: int | None = Field(default=None, ge=1, description="Explain the k best classes instead of `class`.")
    layer: str | None = Field(default=None, description="Target layer; default the model's default layer.")
    colormap: Colormap | None = Field(default=None, description="Overlay colormap; default `jet`.")
    alpha: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="Heatmap opacity in the overlay; default 0.5."
    )
    include: Include | list[Include] | None = Field(
        default=None, description="Outputs to include; default all of `map`, `overlay`, `logits`."
    )


class ExplainJSONRequest(ExplainParameters):
    """The JSON form of an explain request; the multipart form takes the same fields, `image` as a file."""

    image: str = Field(
        description="The image file (JPEG, PNG, WebP, GIF, BMP, TIFF), base64: standard or URL-safe alphabet, "
        "padding optional, whitespace ignored, an optional `data:<type>;base64,` prefix."
    )


class PredictParameters(BaseModel):
    """Predict takes no parameters beside the image; unknown names are refused."""

    model_config = ConfigDict(extra="forbid")


class PredictJSONRequest(PredictParameters):
    image: str = Field(description="The image file, base64 (as for explain).")


class ClassRef(BaseModel):
    index: int
    label: str


class TopClass(ClassRef):
    logit: float
    probability: float


class MapData(BaseModel):
    shape: list[int] = Field(description="`[h, w]`: the target layer's grid (7x7 for most models at 224 px).")
    data: list[list[float]] = Field(description="The raw map, row-major, before upsampling and normalisation.")


class Explanation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    method: MethodName
    class_: ClassRef = Field(alias="class")
    layer: str
    map: MapData | None = None
    overlay_png: str | None = Field(
        default=None,
        description="Base64 PNG: the whole posted image (long side at most the service's limit) with the "
        "map upsampled, normalised to 0..1, colourised and blended on it.",
    )


class PredictResponse(BaseModel):
    model: str
    input_size: list[int] = Field(description="`[height, width]` the image was resized to.")
    logits: list[float] | None = Field(default=None, description="One logit per class, in class-index order.")
    top_classes: list[TopClass]
    timings_ms: dict[str, float]


class ExplainResponse(PredictResponse):
    explanations: list[Explanation] = Field(description="One per (method, class), methods outermost.")
