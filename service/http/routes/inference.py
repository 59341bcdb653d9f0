"""Predict and explain: decode (CPU pool) -> job on the model's queue -> batched worker -> encode (CPU pool)."""

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
from service.core.errors import ServiceError
from service.core.logs import REQUEST_ID
from service.engine.work import ExplainJob
from service.engine.worker import ModelWorker
from service.http.deps import API_KEY_REQUIRED, OwnerDep, RuntimeDep
from service.http.disconnect import wait_for_disconnect
from service.http.explain_preparation import (
    PostedFiles,
    PreparedExplain,
    decode_posted,
    plan_request,
    prepare_explain,
)
from service.http.idempotency import fingerprint, idempotency_key
from service.http.job_runs import start_explain_job
from service.http.parameters import parse_parameters
from service.http.request_body import SECOND_FILES, read_posted_image, take_file
from service.http.responses import build_explain, build_predict
from service.http.routes.answers import StageClock, json_response
from service.http.routes.errors_doc import ERROR_RESPONSES
from service.http.routes.jobs import ACCEPTED_DOC, accepted, with_job_headers
from service.http.runtime import ServiceRuntime
from service.http.tasks import resolve_score_threshold, resolve_threshold
from service.imaging.decoding import ALLOWED_FORMATS
from service.jobs.redis_store import JobOrder, RedisJobStore
from service.jobs.store import Idempotency

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=API_KEY_REQUIRED)
ASYNC_APPLIED = {"Preference-Applied": "respond-async"}


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
    runtime: ServiceRuntime, worker: ModelWorker, prepared: PreparedExplain, idempotency: Idempotency | None
) -> Response:
    """202 with a new job running the prepared work on this replica, or with the job that an earlier request
    with the same `Idempotency-Key` made."""
    owner = prepared.work.owner
    if idempotency is not None:
        earlier = runtime.jobs.replay(owner, idempotency)
        if earlier is not None:
            return accepted(earlier.id, earlier.status_json(with_result=False), replayed=True, headers=ASYNC_APPLIED)
    total = max(prepared.plan.extra_passes, 1)
    job = runtime.jobs.create("explain", worker.name, owner, total, prepared.answer_bytes, idempotency=idempotency)
    work = replace(
        prepared.work, deadline=time.monotonic() + runtime.settings.job_timeout_s, on_progress=job.progress_threadsafe
    )
    try:
        start_explain_job(runtime, worker, job, work, prepared.image, prepared.plan)
    except ServiceError:
        runtime.jobs.forget(job)
        raise
    runtime.jobs.admit(job)
    return accepted(job.id, job.status_json(with_result=False), headers=ASYNC_APPLIED)


async def _queue_job(
    store: RedisJobStore,
    model: str,
    params: ExplainParameters,
    files: PostedFiles,
    prepared: PreparedExplain,
    idempotency: Idempotency | None,
) -> Response:
    """202 with a new job in Redis for any replica to run (the request's parameters and posted bytes kept with
    it), or with the job that an earlier request with the same `Idempotency-Key` made."""
    posted = {"image": files.image, "reference": files.reference, "mask": files.mask}
    order = JobOrder(
        "explain",
        model,
        prepared.work.owner,
        params.model_dump_json(by_alias=True),
        prepared.work.request_id,
        {name: data for name, data in posted.items() if data is not None},
    )
    total = max(prepared.plan.extra_passes, 1)
    job_id, status, replayed = await store.submit(order, total, prepared.answer_bytes, idempotency)
    return accepted(job_id, status, replayed, headers=ASYNC_APPLIED)


def _fingerprint_explain(key: str, model: str, params: ExplainParameters, files: PostedFiles) -> Idempotency:
    asked = params.model_dump_json(by_alias=True).encode()
    for name, second in (("reference", files.reference), ("mask", files.mask)):
        if second is not None:
            asked += f"\n{name} ".encode() + hashlib.sha256(second).digest()
    return fingerprint(key, f"explain {model}".encode(), asked, files.image)


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
    image = await decode_posted(runtime, run_cpu, worker, data, settings.overlay_max_side, with_display=False)
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
    files = PostedFiles(data, take_file(fields, "reference"), take_file(fields, "mask"))
    del data
    params = parse_parameters(ExplainParameters, request.query_params, fields)
    plan = plan_request(runtime, worker, params)
    as_job = prefers_async(request.headers.get("prefer"))
    idempotency = None
    if as_job and key is not None:
        idempotency = await run_cpu(_fingerprint_explain, key, model, params, files)
    prepared = await prepare_explain(
        runtime, worker, run_cpu, params, plan, files, owner, REQUEST_ID.get(), runtime.deadline()
    )
    clock.lap("decode")
    if as_job and isinstance(runtime.jobs, RedisJobStore):
        return await _queue_job(runtime.jobs, model, params, files, prepared, idempotency)
    del files  # the tensors and the picture are what is kept
    if as_job:
        return _start_job(runtime, worker, prepared, idempotency)
    work, image = prepared.work, prepared.image
    result = await _run(runtime, worker, work, request, clock)
    body = await run_cpu(build_explain, worker.model, image, result, plan, settings.top_classes, clock.stages)
    clock.lap("encode")
    body.timings_ms.update(encode=clock.stages["encode"], total=clock.total_ms())
    return json_response(body, clock)
