"""Wire models of long work as jobs: feature visualizations, explain requests sent with `Prefer: respond-async`,
and the job resource `/v1/jobs/{id}` with its progress events."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from api_schemas.errors import ErrorDetail
from api_schemas.explain import ExplainResponse, TopClass


def _json_number(value: object) -> object:
    """Refuse what pydantic's lax mode would turn into a number (`true`, `"5"`): these bodies are JSON only."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_number)]
"""An integer of a JSON body: `3` or `3.0` (JSON Schema's integer), not `true` or `"3"`."""
JsonFloat = Annotated[float, BeforeValidator(_json_number)]


class ClassObjective(BaseModel):
    """Maximise the logit of a class."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["class"]
    class_: StrictInt | str = Field(alias="class", description="Class index or label (case-insensitive).")


class ChannelObjective(BaseModel):
    """Maximise the mean of one channel of a layer's output."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["channel"]
    layer: str = Field(description="A layer with a 2-D feature map (see `GET /v1/models/{model}`).")
    channel: JsonInt = Field(ge=0)


class NeuronObjective(BaseModel):
    """Maximise one position of one channel of a layer's output."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["neuron"]
    layer: str
    channel: JsonInt = Field(ge=0)
    x: Annotated[int, Field(ge=0), BeforeValidator(_json_number)] | None = Field(
        default=None, description="Column on the layer's grid; default the centre."
    )
    y: Annotated[int, Field(ge=0), BeforeValidator(_json_number)] | None = Field(
        default=None, description="Row on the layer's grid; default the centre."
    )


Objective = Annotated[ClassObjective | ChannelObjective | NeuronObjective, Field(discriminator="kind")]


class VisualizationRequest(BaseModel):
    """Activation maximization (Lucid's recipe): the image that maximises the objective, with the weights fixed."""

    model_config = ConfigDict(extra="forbid")

    objective: Objective
    steps: JsonInt = Field(default=256, ge=1, le=4096, description="Optimisation steps (Adam).")
    size: list[Annotated[int, Field(ge=16, le=1024), BeforeValidator(_json_number)]] | None = Field(
        default=None, min_length=2, max_length=2, description="`[height, width]`; default the model's input size."
    )
    seed: JsonInt = Field(default=0, ge=0, le=2**63 - 1, description="Seeds the initial image and every transform.")
    lr: JsonFloat = Field(default=0.05, gt=0, le=10, allow_inf_nan=False, description="Adam's learning rate.")
    fourier: StrictBool = Field(default=True, description="Parameterize the image by its Fourier spectrum.")
    decorrelate: StrictBool = Field(default=True, description="Parameterize colour in decorrelated colour space.")
    transforms: StrictBool = Field(default=True, description="Random pad, jitter, scale and rotation at each step.")


class VisualizationResult(BaseModel):
    image_png: str = Field(description="Base64 PNG of the final image.")
    objective: float = Field(description="The objective's value for the final image, fed as a posted image is.")
    top_classes: list[TopClass] = Field(description="What the model sees in the final image.")


class JobProgress(BaseModel):
    done: int = Field(description="Units of work done: optimisation steps, or images forwarded.")
    total: int


JobKind = Literal["explain", "visualization"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobStatus(BaseModel):
    """A job: its state, its progress, and its result or error once it has ended."""

    id: str
    kind: JobKind
    model: str
    status: JobState
    progress: JobProgress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: ExplainResponse | VisualizationResult | None = Field(
        default=None,
        description="Once `succeeded`: the explain answer, or the visualization; sent by "
        "`GET /v1/jobs/{id}?result=true` and by the event stream's last event, left out of other status answers.",
    )
    error: ErrorDetail | None = Field(default=None, description="Once `failed` or `cancelled`: why.")
