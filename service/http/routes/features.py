"""What a model looks for and sees: feature visualization (a job), an image's feature maps, and its filters.

    POST /v1/models/{model}/visualizations   activation maximization as a job (202, `Location: /v1/jobs/{id}`)
    POST /v1/models/{model}/activations      an image's feature maps at a layer (image as for explain)
    GET  /v1/models/{model}/filters          the kernels of a convolution over the colour channels

The torch work runs on the model's worker, between batches; the PNGs are drawn in the CPU pool.
"""

import asyncio
import time

from fastapi import APIRouter, Request, Response

from api_schemas.explain import MapData
from api_schemas.features import (
    ActivationsJSONRequest,
    ActivationsParameters,
    ActivationsResponse,
    ChannelMap,
    FiltersResponse,
)
from api_schemas.jobs import (
    JobStatus,
    VisualizationRequest,
)
from model_store import LoadedModel
from service.core.errors import MethodNotApplicable, ServiceError
from service.core.logs import REQUEST_ID
from service.engine.visualizations import VisualizationOrder
from service.http.deps import API_KEY_REQUIRED, OwnerDep, RuntimeDep
from service.http.idempotency import fingerprint, idempotency_key
from service.http.job_runs import spawn_job
from service.http.parameters import parse_parameters, validate_fields
from service.http.request_body import read_json_object, read_posted_image
from service.http.routes.answers import StageClock, json_response
from service.http.routes.errors_doc import ERROR_RESPONSES, error_responses
from service.http.routes.inference import image_body_doc
from service.http.routes.jobs import ACCEPTED_DOC, accepted, with_job_headers
from service.http.visualization_work import plan_visualization, visualization_answer
from service.imaging.decoding import open_rgb
from service.imaging.encoding import encode_base64
from service.jobs.redis_store import JobOrder, RedisJobStore
from service.visualization import objectives
from service.visualization.features import (
    FeatureMaps,
    feature_maps,
    filter_layers,
    filter_weights,
    layer_activations,
    normalize_kernels,
)
from service.visualization.png import encode_feature_map_grid, encode_filter_grid

router = APIRouter(prefix="/v1/models", tags=["features"], dependencies=API_KEY_REQUIRED)
DEFAULT_TOP_N = 16
VISUALIZATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": VisualizationRequest.model_json_schema(by_alias=True)}},
    }
}


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
    spec, answer_bytes = plan_visualization(runtime, worker, body)
    idempotency = None
    key = idempotency_key(request)
    if key is not None:
        idempotency = await run_cpu(
            fingerprint, key, f"visualize {model}".encode(), body.model_dump_json(by_alias=True).encode()
        )
    if isinstance(runtime.jobs, RedisJobStore):
        order = JobOrder("visualization", model, owner, body.model_dump_json(by_alias=True), REQUEST_ID.get())
        return accepted(*await runtime.jobs.submit(order, spec.steps, answer_bytes, idempotency))
    if idempotency is not None:
        earlier = runtime.jobs.replay(owner, idempotency)
        if earlier is not None:
            return accepted(earlier.id, earlier.status_json(with_result=False), replayed=True)
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
    spawn_job(runtime, job, lambda: visualization_answer(runtime, worker, order))
    return accepted(job.id, job.status_json(with_result=False))


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
