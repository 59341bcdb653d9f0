"""Predict and explain: decode (CPU pool) -> job on the model's queue -> batched worker -> encode (CPU pool)."""

import asyncio
import hashlib
import time
from dataclasses import replace

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api_schemas import (
    ExplainJSONRequest,
    ExplainParameters,
    ExplainResponse,
    PredictJSONRequest,
    PredictParameters,
    PredictResponse,
)
from model_store import LoadedModel
from service.core.errors import AnswerTooLarge, ServiceError
from service.core.logs import REQUEST_ID
from service.engine.work import ExplainJob
from service.engine.worker import ModelWorker
from service.http.deps import API_KEY_REQUIRED, OwnerDep, RuntimeDep
from service.http.disconnect import wait_for_disconnect
from service.http.idempotency import fingerprint, idempotency_key
from service.http.job_runs import start_explain_job
from service.http.parameters import ExplainPlan, parse_parameters, plan_explanation
from service.http.request_body import SECOND_FILES, RunCpu, read_posted_image, take_file
from service.http.responses import build_explain, build_predict, estimate_explain_bytes
from service.http.routes.answers import StageClock, json_response
from service.http.routes.errors_doc import ERROR_RESPONSES
from service.http.routes.jobs import ACCEPTED_DOC, accepted, with_job_headers
from service.http.runtime import ServiceRuntime
from service.http.tasks import check_mask, check_reference, resolve_score_threshold, resolve_threshold
from service.imaging.decoding import ALLOWED_FORMATS, DecodedImage, decode_mask, display_picture, open_rgb
from service.jobs.store import Idempotency
from service.metrics import METRICS

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=API_KEY_REQUIRED)


def image_body_doc(json_model: type[BaseModel], parameters: type[BaseModel]) -> dict:
    """OpenAPI of a route that takes an image in the three body forms, with `parameters` as form fields, JSON
    fields (`json_model`) or query parameters."""
    properties = parameters.model_json_schema(by_alias=True)["properties"]
    fields = {name: _without_null(prop) for name, prop in properties.items()}
    raw_image = {"type": "string", "format": "binary", "description": ", ".join(ALLOWED_FORMATS)}
    closed = parameters.model_config.get("extra") == "forbid"  # unknown fields are refused (400)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {
                            "image": {"type": "string", "format": "binary", "contentMediaType": "image/*"},
                            **fields,
                            **{
                                name: {"type": "string", "format": "binary", "contentMediaType": "image/*"}
                                for name in SECOND_FILES
                                if name in json_model.model_fields
                            },
                        },
                    }
                    | ({"additionalProperties": False} if closed else {})
                },
                "application/json": {"schema": json_model.model_json_schema(by_alias=True)},
                "image/*": {"schema": raw_image},
            },
        },
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": prop, "description": prop.get("description", "")}
            for name, prop in fields.items()
        ],
    }


def _without_null(prop: dict) -> dict:
    """A field's schema as a form field or query parameter: text, where leaving the name out is how to say null."""
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if not branches:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest} if len(branches) == 1 else {"anyOf": branches, **rest}


def _bound_answer(plan: ExplainPlan, model: LoadedModel, image: DecodedImage, max_bytes: int) -> int:
    """The answer's estimated bytes; a request whose answer would weigh more than `max_bytes` is refused before
    any work.

    Raises:
        AnswerTooLarge: with the estimate, the bound and what shrinks the answer.
    """
    overlay_size = None if image.display is None else (image.display.shape[1], image.display.shape[0])
    estimate = estimate_explain_bytes(plan, model, overlay_size)
    if estimate > max_bytes:
        mib = 1024 * 1024
        raise AnswerTooLarge(
            f"the answer would take about {estimate / mib:.1f} MiB ({len(plan.methods)} methods x "
            f"{plan.class_count} classes); the bound is "
            f"{max_bytes / mib:.1f} MiB. Shrink it with map_encoding=base64, overlay_format=jpeg or webp, a smaller "
            "overlay_max_side, include= without overlay or map, or fewer methods and classes"
        )
    return estimate


async def _decode(
    runtime: ServiceRuntime,
    run_cpu: RunCpu,
    worker: ModelWorker,
    data: bytes,
    display_max_side: int,
    with_display: bool,
) -> DecodedImage:
    """Decode the posted bytes for the worker's model, in the CPU pool: the model's input and the picture that
    overlays are drawn on (when `with_display`) are resized side by side."""
    preprocessing = worker.model.preprocessing
    with worker.incoming(), runtime.decoding(len(data)):
        rgb, size = await run_cpu(open_rgb, data, preprocessing, runtime.settings.max_image_pixels, display_max_side)
        if not with_display:
            return DecodedImage(await run_cpu(preprocessing.to_tensor, rgb), None, size)
        tensor, display = await asyncio.gather(
            run_cpu(preprocessing.to_tensor, rgb), run_cpu(display_picture, rgb, display_max_side)
        )
        return DecodedImage(tensor, display, size)


def prefers_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240: comma-separated preferences, each `token[=value][; params]`) asks
    for `respond-async`."""
    if not prefer:
        return False
    return any(part.split(";")[0].split("=")[0].strip().lower() == "respond-async" for part in prefer.split(","))


async def _run(runtime: ServiceRuntime, worker: ModelWorker, job: ExplainJob, request: Request, clock: StageClock):
    """Queue the job and wait for it; records the `queue` and `inference` stages."""
    result = await runtime.execute(worker, job, lambda: wait_for_disconnect(request.receive))
    clock.lap("queue")
    clock.stages["queue"] = round(max(clock.stages["queue"] - result.inference_ms, 0.0), 3)
    clock.stages["inference"] = round(result.inference_ms, 3)
    return result


def _start_job(
    runtime: ServiceRuntime,
    worker: ModelWorker,
    work: ExplainJob,
    image: DecodedImage,
    plan: ExplainPlan,
    answer_bytes: int,
    idempotency: Idempotency | None,
) -> Response:
    """202 with a new job running `work`, or with the job that an earlier request with the same
    `Idempotency-Key` made."""
    headers = {"Preference-Applied": "respond-async"}
    if idempotency is not None:
        earlier = runtime.jobs.replay(work.owner, idempotency)
        if earlier is not None:
            return accepted(earlier, replayed=True, headers=headers)
    job = runtime.jobs.create(
        "explain", worker.name, work.owner, max(plan.extra_passes, 1), answer_bytes, idempotency=idempotency
    )
    work = replace(
        work, deadline=time.monotonic() + runtime.settings.job_timeout_s, on_progress=job.progress_threadsafe
    )
    try:
        start_explain_job(runtime, worker, job, work, image, plan)
    except ServiceError:
        runtime.jobs.forget(job)
        raise
    runtime.jobs.admit(job)
    return accepted(job, headers=headers)


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=image_body_doc(PredictJSONRequest, PredictParameters),
)
async def predict(model: str, request: Request, runtime: RuntimeDep, owner: OwnerDep) -> Response:
    """Logits and top classes of one image."""
    clock = StageClock()
    settings = runtime.settings
    worker = runtime.worker_with_room(model)
    run_cpu = runtime.cpu_for(owner)
    data, fields = await read_posted_image(request, settings.max_body_bytes, run_cpu)
    params = parse_parameters(PredictParameters, request.query_params, fields)
    threshold = resolve_threshold(params.threshold, worker.model)
    score_threshold = resolve_score_threshold(params.score_threshold, worker.model)
    image = await _decode(runtime, run_cpu, worker, data, settings.overlay_max_side, with_display=False)
    del data  # the tensor is what is kept
    clock.lap("decode")
    job = ExplainJob(
        image=image.tensor,
        methods=(),
        classes=None,
        top_k=0,
        layer=None,
        deadline=runtime.deadline(),
        request_id=REQUEST_ID.get(),
        score_threshold=score_threshold,
        owner=owner,
    )
    result = await _run(runtime, worker, job, request, clock)
    body = await run_cpu(
        build_predict,
        worker.model,
        image,
        result,
        settings.top_classes,
        threshold,
        settings.overlay_max_side,
        clock.stages,
    )
    clock.lap("encode")
    body.timings_ms.update(encode=clock.stages["encode"], total=clock.total_ms())
    return json_response(body, clock)


@router.post(
    "/{model}/explain",
    response_model=ExplainResponse,
    responses={**ACCEPTED_DOC, **ERROR_RESPONSES},
    openapi_extra=with_job_headers(image_body_doc(ExplainJSONRequest, ExplainParameters), prefer=True),
)
async def explain(model: str, request: Request, runtime: RuntimeDep, owner: OwnerDep) -> Response:
    """Maps of one image for one or several methods and classes, from the model's shared batched pass.

    With `Prefer: respond-async` (RFC 7240) the request becomes a job: 202 with `Location: /v1/jobs/{id}` at
    once, the answer later in the job's `result`, and no request deadline but the job's (`JOB_TIMEOUT_S`). With
    an `Idempotency-Key` too, sending the same request again returns the same job.
    """
    clock = StageClock()
    settings = runtime.settings
    worker = runtime.worker_with_room(model)
    key = idempotency_key(request)
    run_cpu = runtime.cpu_for(owner)
    data, fields = await read_posted_image(request, settings.max_body_bytes, run_cpu)
    reference_data = take_file(fields, "reference")
    mask_data = take_file(fields, "mask")
    params = parse_parameters(ExplainParameters, request.query_params, fields)
    plan = plan_explanation(
        params,
        worker.model,
        settings.max_classes_per_request,
        settings.max_request_cost,
        settings.evaluation_steps,
        settings.overlay_max_side,
        settings.max_explanations_per_request,
    )
    concept = check_reference(worker.model, reference_data, params.concept)
    check_mask(worker.model, mask_data)
    as_job = prefers_async(request.headers.get("prefer"))
    idempotency = None
    if as_job and key is not None:
        asked = params.model_dump_json(by_alias=True).encode()
        for name, second in (("reference", reference_data), ("mask", mask_data)):
            if second is not None:
                asked += f"\n{name} ".encode() + hashlib.sha256(second).digest()
        idempotency = await run_cpu(fingerprint, key, f"explain {model}".encode(), asked, data)
    image = await _decode(runtime, run_cpu, worker, data, plan.overlay_max_side, with_display="overlay" in plan.include)
    reference = None
    if reference_data is not None:
        reference = (await _decode(runtime, run_cpu, worker, reference_data, plan.overlay_max_side, False)).tensor
    region = None
    if mask_data is not None:
        input_size = worker.model.preprocessing.input_size
        region = await run_cpu(decode_mask, mask_data, image.size, input_size, settings.max_image_pixels)
    del data, reference_data, mask_data  # the tensors and the picture are what is kept
    clock.lap("decode")
    answer_bytes = _bound_answer(plan, worker.model, image, settings.max_answer_bytes)
    work = ExplainJob(
        image=image.tensor,
        methods=plan.methods,
        classes=plan.classes,
        top_k=plan.top_k,
        threshold=plan.threshold,
        reference=reference,
        concept=concept,
        region=region,
        score_threshold=plan.score_threshold,
        layer=plan.layer,
        deadline=runtime.deadline(),
        request_id=REQUEST_ID.get(),
        options=plan.options,
        evaluate=plan.evaluate,
        metrics=tuple(name for name in plan.metrics if METRICS[name].runs_model),
        extra_passes=plan.extra_passes,
        owner=owner,
    )
    if as_job:
        return _start_job(runtime, worker, work, image, plan, answer_bytes, idempotency)
    result = await _run(runtime, worker, work, request, clock)
    body = await run_cpu(build_explain, worker.model, image, result, plan, settings.top_classes, clock.stages)
    clock.lap("encode")
    body.timings_ms.update(encode=clock.stages["encode"], total=clock.total_ms())
    return json_response(body, clock)
