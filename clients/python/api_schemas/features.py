"""Wire models of what a model sees: an image's feature maps at a layer, and a first convolution's filters."""

from pydantic import BaseModel, ConfigDict, Field

from api_schemas.explain import BASE64_IMAGE, MapData


class ActivationsParameters(BaseModel):
    """Parameters of `POST /v1/models/{model}/activations` (query, form or JSON fields, as for explain)."""

    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(default=None, description="A layer with a 2-D feature map; default the model's.")
    top_n: int | None = Field(default=None, ge=1, le=256, description="Channels shown, largest mean first; 16.")


class ActivationsJSONRequest(ActivationsParameters):
    image: str = Field(
        min_length=1, json_schema_extra=BASE64_IMAGE, description="The image file, base64 (as for explain)."
    )


class ChannelMap(BaseModel):
    channel: int
    mean: float
    map: MapData = Field(description="The channel's raw activations on the layer's grid.")


class ActivationsResponse(BaseModel):
    model: str
    layer: str
    shape: list[int] = Field(description="`[channels, h, w]` of the layer's output.")
    means: list[float] = Field(description="The mean activation of every channel, in channel order.")
    top_channels: list[ChannelMap] = Field(description="The `top_n` channels of largest mean, largest first.")
    grid_png: str = Field(description="Base64 PNG: the top channels' maps in a grid, each normalised on its own.")


class FiltersResponse(BaseModel):
    model: str
    layer: str
    shape: list[int] = Field(description="`[filters, 3, k, k]` of the convolution's weight.")
    grid_png: str = Field(description="Base64 PNG: each kernel as an RGB tile, normalised on its own to 0..1.")
