"""Wire models of the catalogue endpoints: models, methods and health."""

from typing import Literal

from pydantic import BaseModel, Field

from api_schemas.explain import MethodName, MetricName, Task


class MethodInfo(BaseModel):
    name: MethodName
    aliases: list[str]
    title: str
    paper: str
    raw_map: str = Field(description="Exact definition of the raw map returned in `map`.")
    needs: list[str] = Field(description="What the method takes from the planned passes.")
    cost: str = Field(description="Its cost in forward passes; the shared pass serves every method of a batch.")
    input_resolution: bool = Field(description="Maps at the input resolution; otherwise on the layer's grid.")
    parameters: list[str] = Field(description="Request parameters that tune it.")
    requires: str | None = Field(default=None, description="Architectural requirement, if any.")
    sanity_check: bool = Field(
        description="Passes the model-randomisation test of Adebayo et al. 2018: its maps change when the "
        "classifier's weights are re-initialised."
    )


class MethodList(BaseModel):
    methods: list[MethodInfo]


class MetricInfo(BaseModel):
    name: MetricName
    title: str
    group: str = Field(description="Quantus's group: faithfulness, robustness, localisation, complexity, ...")
    paper: str
    definition: str = Field(description="What it computes from the explanation.")
    better: Literal["higher", "lower"] = Field(description="Which way a better explanation moves it.")
    parameters: dict[str, bool | int | float | str] = Field(
        description="Its parameters at their defaults (Quantus 0.6.0's)."
    )
    cost: str = Field(description="Its cost in forward passes.")


class MetricList(BaseModel):
    metrics: list[MetricInfo]


class ModelInfo(BaseModel):
    name: str
    source: str
    input_size: list[int]
    num_classes: int
    task: Task = Field(
        description="`classification` (softmax over classes), `multilabel` (a sigmoid per label), `embedding` (a "
        "vector, explained by its similarity to a reference image) or `segmentation` (a label per pixel)."
    )
    default_layer: str | None
    classifier_layer: str | None
    layers: list[str] = Field(description="Layer names usable as `layer`: modules with a 2-D feature map.")
    methods: list[MethodName] = Field(description="Methods that apply to this model at its default layer.")
    concepts: list[str] = Field(
        default_factory=list, description="An embedding model's stored concept vectors, which `concept` names."
    )
    device: str


class ModelList(BaseModel):
    models: list[ModelInfo]


class HealthStatus(BaseModel):
    status: str
    models: dict[str, bool] = Field(default_factory=dict)
    job_store: Literal["memory", "redis", "unavailable"] | None = Field(
        default=None,
        description="Where jobs live: this replica's `memory`, `redis`, or `unavailable` when Redis cannot be reached "
        "(jobs are refused with 503 `job_store_unavailable`; the replica stays ready for synchronous requests).",
    )
