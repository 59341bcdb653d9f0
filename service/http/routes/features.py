"""What a model looks for and sees: feature visualization (a job), an image's feature maps, and its filters.

    POST /v1/models/{model}/visualizations   activation maximization as a job (202, `Location: /v1/jobs/{id}`)
    POST /v1/models/{model}/activations      an image's feature maps at a layer (image as for explain)
    GET  /v1/models/{model}/filters          the kernels of a convolution over the colour channels

The torch work runs on the model's worker, between batches; the PNGs are drawn in the CPU pool.
"""

import asyncio
import math
import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api_schemas.explain import MapData
from api_schemas.features import (
    ActivationsJSONRequest,
    ActivationsParameters,
    ActivationsResponse,
    ChannelMap,
    FiltersResponse,
)
from api_schemas.jobs import (
    ChannelObjective,
    ClassObjective,
    JobStatus,
    NeuronObjective,
    VisualizationRequest,
    VisualizationResult,
)
from model_store import LoadedModel
from service.core.errors import CostExceeded, MethodNotApplicable, ServiceError
from service.engine.visualizations import VisualizationOrder
from service.http.deps import API_KEY_REQUIRED, OwnerDep, RuntimeDep
from service.http.idempotency import fingerprint, idempotency_key
from service.http.job_runs import spawn_job
from service.http.parameters import parse_parameters, resolve_class, validate_fields
from service.http.request_body import read_json_object, read_posted_image
from service.http.responses import top_classes
from service.http.routes.answers import StageClock, json_response
from service.http.routes.errors_doc import ERROR_RESPONSES, error_responses
from service.http.routes.inference import image_body_doc
from service.http.routes.jobs import ACCEPTED_DOC, accepted, with_job_headers
from service.imaging.decoding import open_rgb
from service.imaging.encoding import encode_base64
from service.methods import GRADIENT_PASS_COST
from service.visualization import engine, objectives
from service.visualization.features import (
    FeatureMaps,
    feature_maps,
    filter_layers,
    filter_weights,
    layer_activations,
    normalize_kernels,
)
from service.visualization.png import encode_feature_map_grid, encode_filter_grid, encode_image_png

router = APIRouter(prefix="/v1/models", tags=["features"], dependencies=API_KEY_REQUIRED)
DEFAULT_TOP_N = 16
VISUALIZATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": VisualizationRequest.model_json_schema(by_alias=True)}},
    }
}


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


@router.post(
    "/{model}/visualizations",
    status_code=202,
    response_model=JobStatus,
    responses={**ACCEPTED_DOC, **error_responses(400, 401, 404, 413, 415, 422, 503)},
    openapi_extra=with_job_headers(VISUALIZATION_BODY),
)
async def visualize(model: str, request: Request, runtime: RuntimeDep, owner: OwnerDep) -> Response:
    """Start a feature visualization (activation maximization, Lucid's recipe) as a job: the image that
    maximises a class logit, a channel or a neuron, with the weights fixed. Follow it at `Location`. Its cost
    counts its steps and its canvas; it has the deadline of a job (`JOB_TIMEOUT_S`)."""
    worker = runtime.worker(model)
    run_cpu = runtime.cpu_for(owner)
    body = validate_fields(
        VisualizationRequest, await read_json_object(request, runtime.settings.max_body_bytes, run_cpu)
    )
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
    idempotency = None
    key = idempotency_key(request)
    if key is not None:
        idempotency = await run_cpu(
            fingerprint, key, f"visualize {model}".encode(), body.model_dump_json(by_alias=True).encode()
        )
        earlier = runtime.jobs.replay(owner, idempotency)
        if earlier is not None:
            return accepted(earlier, replayed=True)
    answer_bytes = png_answer_bytes(height, width)
    job = runtime.jobs.create(
        "visualization", model, owner, spec.steps, reserved_bytes=answer_bytes, idempotency=idempotency
    )
    order = VisualizationOrder(
        spec,
        on_progress=job.progress_threadsafe,
        owner=owner,
        deadline=time.monotonic() + runtime.settings.job_timeout_s,
    )
    try:
        worker.visualize(order)
    except ServiceError:
        runtime.jobs.forget(job)
        raise
    runtime.jobs.admit(job)
    job.stop_work = order.cancel_requested.set

    async def result() -> BaseModel:
        outcome = await asyncio.wrap_future(order.future)
        png = await run_cpu(encode_image_png, outcome.image)
        description = outcome.description
        return VisualizationResult(
            image_png=encode_base64(png),
            objective=description.objective,
            top_classes=top_classes(worker.model, description.logits, runtime.settings.top_classes),
        )

    spawn_job(runtime, job, result)
    return accepted(job)


@router.post(
    "/{model}/activations",
    response_model=ActivationsResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=image_body_doc(ActivationsJSONRequest, ActivationsParameters),
)
async def activations(model: str, request: Request, runtime: RuntimeDep, owner: OwnerDep) -> Response:
    """An image's feature maps at a layer: every channel's mean activation, and the raw maps of the `top_n`
    channels of largest mean with a PNG grid of them."""
    clock = StageClock()
    settings = runtime.settings
    worker = runtime.worker_with_room(model)
    run_cpu = runtime.cpu_for(owner)
    data, fields = await read_posted_image(request, settings.max_body_bytes, run_cpu)
    params = parse_parameters(ActivationsParameters, request.query_params, fields)
    layer = params.layer or worker.model.default_layer
    if layer is None:
        raise MethodNotApplicable(f"model '{model}' has no default layer; name one with 'layer'")
    objectives.require_layer(worker.model, layer)
    preprocessing = worker.model.preprocessing  # the model's input only: no overlay picture is drawn
    with runtime.decoding(len(data)):
        rgb, _size = await run_cpu(open_rgb, data, preprocessing, settings.max_image_pixels, settings.overlay_max_side)
        tensor = await run_cpu(preprocessing.to_tensor, rgb)
    del data, rgb
    clock.lap("decode")
    top_n = params.top_n or DEFAULT_TOP_N

    def capture(loaded: LoadedModel) -> FeatureMaps:
        output = layer_activations(loaded, tensor[None].to(loaded.device), layer)[0]
        return feature_maps(output, top_n)

    maps = await asyncio.wrap_future(worker.call(capture, owner))
    clock.lap("inference")
    grid = await run_cpu(encode_feature_map_grid, maps.maps.numpy())
    clock.lap("encode")
    means = maps.means.tolist()
    answer = ActivationsResponse(
        model=model,
        layer=layer,
        shape=list(worker.model.layer_shapes[layer]),
        means=means,
        top_channels=[
            ChannelMap(channel=c, mean=means[c], map=MapData(shape=list(m.shape), data=m.tolist()))
            for c, m in zip(maps.channels.tolist(), maps.maps.numpy(), strict=True)
        ],
        grid_png=encode_base64(grid),
    )
    return json_response(answer, clock)


@router.get("/{model}/filters", response_model=FiltersResponse, responses=error_responses(400, 401, 404, 503))
async def filters(model: str, runtime: RuntimeDep, owner: OwnerDep, layer: str | None = None) -> Response:
    """The kernels of a convolution over the three colour channels (default: the first one), each normalised on
    its own to 0..1, as a PNG grid of RGB tiles. Another layer is refused with the usable ones named."""
    clock = StageClock()
    worker = runtime.worker(model)

    def kernels(loaded: LoadedModel):  # type: ignore[no-untyped-def]
        chosen = layer or next(iter(filter_layers(loaded)), "")
        return chosen, normalize_kernels(filter_weights(loaded, chosen))

    chosen, weights = await asyncio.wrap_future(worker.call(kernels, owner))
    clock.lap("inference")
    grid = await runtime.run_cpu(encode_filter_grid, weights.numpy(), owner=owner)
    clock.lap("encode")
    answer = FiltersResponse(model=model, layer=chosen, shape=list(weights.shape), grid_png=encode_base64(grid))
    return json_response(answer, clock)
