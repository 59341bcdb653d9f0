"""A feature visualization made ready for the worker (its objective, spec and bounds) and its answer. The
visualization route does it for each request, and a replica does it again for a job it takes from the Redis
queue (from the request's body kept with the job)."""

import asyncio
import math

from api_schemas.jobs import (
    ChannelObjective,
    ClassObjective,
    NeuronObjective,
    VisualizationRequest,
    VisualizationResult,
)
from model_store import LoadedModel
from service.core.errors import CostExceeded
from service.engine.visualizations import VisualizationOrder
from service.engine.worker import ModelWorker
from service.http.parameters import resolve_class
from service.http.responses import top_classes
from service.http.runtime import ServiceRuntime
from service.imaging.encoding import encode_base64
from service.methods import GRADIENT_PASS_COST
from service.visualization import engine, objectives
from service.visualization.png import encode_image_png


def plan_visualization(
    runtime: ServiceRuntime, worker: ModelWorker, body: VisualizationRequest
) -> tuple[engine.VisualizationSpec, int]:
    """The request's spec for the worker, and its answer's most bytes.

    Raises:
        InvalidParameter: what `engine.validate_spec` refuses (a layer, channel or neuron the model lacks).
        CostExceeded: more forward-pass equivalents than `MAX_REQUEST_COST`.
    """
    spec = engine.validate_spec(
        engine.VisualizationSpec(
            objective=engine_objective(body.objective, worker.model),
            steps=body.steps,
            size=(body.size[0], body.size[1]) if body.size else None,
            seed=body.seed,
            lr=body.lr,
            fourier=body.fourier,
            decorrelate=body.decorrelate,
            transforms=body.transforms,
        ),
        worker.model,
    )
    height, width = spec.size or worker.model.preprocessing.input_size
    cost = visualization_cost(spec.steps, (height, width), worker.model.preprocessing.input_size)
    if cost > runtime.settings.max_request_cost:
        raise CostExceeded(
            f"{spec.steps} steps on a {height}x{width} canvas cost {cost} forward-pass equivalents; the bound is "
            f"{runtime.settings.max_request_cost}"
        )
    return spec, png_answer_bytes(height, width)


async def visualization_answer(
    runtime: ServiceRuntime, worker: ModelWorker, order: VisualizationOrder
) -> VisualizationResult:
    """The answer of a visualization the worker was given: its image as a PNG, drawn in the CPU pool."""
    outcome = await asyncio.wrap_future(order.future)
    png = await runtime.run_cpu(encode_image_png, outcome.image, owner=order.owner)
    description = outcome.description
    return VisualizationResult(
        image_png=encode_base64(png),
        objective=description.objective,
        top_classes=top_classes(worker.model, description.logits, runtime.settings.top_classes),
    )


def engine_objective(
    objective: ClassObjective | ChannelObjective | NeuronObjective, model: LoadedModel
) -> objectives.Objective:
    if isinstance(objective, ClassObjective):
        return objectives.ClassObjective(resolve_class(objective.class_, model))
    if isinstance(objective, ChannelObjective):
        return objectives.ChannelObjective(objective.layer, objective.channel)
    return objectives.NeuronObjective(objective.layer, objective.channel, objective.x, objective.y)


def visualization_cost(steps: int, canvas: tuple[int, int], input_size: tuple[int, int]) -> int:
    """Forward-pass equivalents of a visualization. Each step is a forward and backward pass of the model at its
    input size (the canvas is resized to it), plus the work on the canvas (its parameterization, transforms and
    their gradients): measured on the built-in model, a 896 px canvas step took 2.2x a 224 px one, 448 px 1.24x,
    so each 4 input sizes of canvas add one pass."""
    canvas_passes = canvas[0] * canvas[1] // (4 * input_size[0] * input_size[1])
    return steps * (GRADIENT_PASS_COST + canvas_passes)


def png_answer_bytes(height: int, width: int) -> int:
    """The most a visualization's answer weighs: its PNG uncompressed, in base64, and the rest of the JSON."""
    return math.ceil(height * width * 3 * 4 / 3) + 4096
