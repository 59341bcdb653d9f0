"""Wire models of the catalogue endpoints: models, methods and health."""

from pydantic import BaseModel, Field

from api_schemas.explain import MethodName


class MethodInfo(BaseModel):
    name: MethodName
    aliases: list[str]
    title: str
    paper: str
    raw_map: str = Field(description="Exact definition of the raw map returned in `map`.")
    needs: list[str] = Field(description="What the method takes from the batched pass.")
    forward_passes: int = Field(description="Forward passes per batch, shared with every other method.")
    backward: str = Field(description="`none`, or how far its gradient flows.")
    requires: str | None = Field(default=None, description="Architectural requirement, if any.")


class MethodList(BaseModel):
    methods: list[MethodInfo]


class ModelInfo(BaseModel):
    name: str
    source: str
    input_size: list[int]
    num_classes: int
    default_layer: str | None
    classifier_layer: str | None
    layers: list[str] = Field(description="Layer names usable as `layer`: modules with a 2-D feature map.")
    methods: list[MethodName] = Field(description="Methods that apply to this model at its default layer.")
    device: str


class ModelList(BaseModel):
    models: list[ModelInfo]


class HealthStatus(BaseModel):
    status: str
    models: dict[str, bool] = Field(default_factory=dict)
