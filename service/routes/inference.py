"""Predict and explain: decode (CPU pool) -> job on the model's queue -> batched worker -> encode (CPU pool)."""

import time

from fastapi import APIRouter, Request, Response

from api_schemas import (
    ExplainJSONRequest,
    ExplainParameters,
    ExplainResponse,
    PredictJSONRequest,
    PredictParameters,
    PredictResponse,
)
from service.deps import API_KEY_REQUIRED, RuntimeDep
from service.disconnect import wait_for_disconnect
from service.imaging import ALLOWED_FORMATS, DecodedImage, decode_image
from service.jobs import ExplainJob
from service.logs import REQUEST_ID
from service.parameters import parse_parameters, plan_explanation
from service.request_body import read_posted_image
from service.responses import build_explain, build_predict
from service.routes.errors_doc import ERROR_RESPONSES
from service.runtime import ServiceRuntime
from service.worker import ModelWorker

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=API_KEY_REQUIRED)


def _request_body_doc(json_model: type, form_fields: dict) -> dict:
    image_types = ", ".join(ALLOWED_FORMATS)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {"image": {"type": "string", "format": "binary"}, **form_fields},
                    }
                },
                "application/json": {"schema": json_model.model_json_schema(by_alias=True)},
                "image/*": {"schema": {"type": "string", "format": "binary", "description": image_types}},
            },
        }
    }


def _query_parameters_doc() -> list[dict]:
    schema = ExplainParameters.model_json_schema(by_alias=True)
    return [
        {"name": name, "in": "query", "required": False, "schema": prop, "description": prop.get("description", "")}
        for name, prop in schema["properties"].items()
    ]


_EXPLAIN_FORM = ExplainParameters.model_json_schema(by_alias=True)["properties"]
EXPLAIN_OPENAPI = {**_request_body_doc(ExplainJSONRequest, _EXPLAIN_FORM), "parameters": _query_parameters_doc()}
PREDICT_OPENAPI = _request_body_doc(PredictJSONRequest, {})


async def _decode(runtime: ServiceRuntime, worker: ModelWorker, data: bytes) -> DecodedImage:
    """Decode the posted bytes for the worker's model, in the CPU pool."""
    settings = runtime.settings
    return await runtime.run_cpu(
        decode_image, data, worker.model.preprocessing, settings.max_image_pixels, settings.overlay_max_side
    )


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=PREDICT_OPENAPI,
)
async def predict(model: str, request: Request, runtime: RuntimeDep) -> Response:
    """Logits and top classes of one image."""
    started = time.perf_counter()
    settings = runtime.settings
    worker = runtime.worker_with_room(model)
    data, fields = await read_posted_image(request, settings.max_body_bytes)
    parse_parameters(PredictParameters, request.query_params, fields)
    image = await _decode(runtime, worker, data)
    decoded_ms = _ms(started)
    job = ExplainJob(
        image=image.tensor,
        methods=(),
        classes=None,
        top_k=0,
        layer=None,
        deadline=runtime.deadline(),
        request_id=REQUEST_ID.get(),
    )
    result = await runtime.execute(worker, job, lambda: wait_for_disconnect(request.receive))
    timings = {"decode": decoded_ms, "inference": round(result.inference_ms, 3), "total": _ms(started)}
    body = await runtime.run_cpu(build_predict, worker.model, result, settings.top_classes, timings)
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")


@router.post(
    "/{model}/explain",
    response_model=ExplainResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=EXPLAIN_OPENAPI,
)
async def explain(model: str, request: Request, runtime: RuntimeDep) -> Response:
    """Maps of one image for one or several methods and classes, from the model's shared batched pass."""
    started = time.perf_counter()
    settings = runtime.settings
    worker = runtime.worker_with_room(model)
    data, fields = await read_posted_image(request, settings.max_body_bytes)
    params = parse_parameters(ExplainParameters, request.query_params, fields)
    plan = plan_explanation(
        params, worker.model, settings.max_classes_per_request, settings.max_extra_passes, settings.evaluation_steps
    )
    image = await _decode(runtime, worker, data)
    decoded_ms = _ms(started)
    job = ExplainJob(
        image=image.tensor,
        methods=plan.methods,
        classes=plan.classes,
        top_k=plan.top_k,
        layer=plan.layer,
        deadline=runtime.deadline(),
        request_id=REQUEST_ID.get(),
        options=plan.options,
        evaluate=plan.evaluate,
    )
    queued = time.perf_counter()
    result = await runtime.execute(worker, job, lambda: wait_for_disconnect(request.receive))
    waited_ms = _ms(queued)
    encode_started = time.perf_counter()
    timings = {"decode": decoded_ms, "queue": round(max(waited_ms - result.inference_ms, 0.0), 3)}
    timings["inference"] = round(result.inference_ms, 3)
    body = await runtime.run_cpu(build_explain, worker.model, image, result, plan, settings.top_classes, timings)
    body.timings_ms.update(encode=_ms(encode_started), total=_ms(started))
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")
