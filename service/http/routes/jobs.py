"""Jobs: `GET /v1/jobs/{id}`, its Server-Sent Events, and `DELETE` to cancel.

Jobs are made by `POST /v1/models/{model}/visualizations` and by an explain request sent with
`Prefer: respond-async` (RFC 7240); both answer 202 with `Location: /v1/jobs/{id}`.
"""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from api_schemas.jobs import JobStatus
from service.core.logs import REQUEST_ID
from service.http.deps import API_KEY_REQUIRED, JobsRuntimeDep, OwnerDep
from service.http.routes.errors_doc import error_responses

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=API_KEY_REQUIRED)
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_RESPONSES = error_responses(401, 404, 503)
ACCEPTED_DOC = {
    202: {
        "model": JobStatus,
        "description": "Accepted as a job: follow it at `Location` (its status, events, or DELETE to cancel).",
        "headers": {
            "Location": {"description": "`/v1/jobs/{id}`", "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds before polling.", "schema": {"type": "integer", "minimum": 0}},
            "Idempotent-Replayed": {
                "description": "`true` when this is the job an earlier request with the same `Idempotency-Key` made.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
    }
}


def with_job_headers(doc: dict, prefer: bool = False) -> dict:
    """`doc` (an operation's `openapi_extra`) with the `Idempotency-Key` header of a request that creates a job,
    and the `Prefer` header that turns a request into a job when `prefer`."""
    headers = [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
            "description": "A key of the client's (a UUID): the same request sent again with it, while its job is "
            "kept, returns that job (`Idempotent-Replayed: true`) instead of starting another; with another request "
            "it is refused (422 `idempotency_key_reused`).",
        }
    ]
    if prefer:
        headers.append(
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "`respond-async` (RFC 7240): answer 202 at once with a job instead of waiting for "
                "the result.",
            }
        )
    return {**doc, "parameters": [*doc.get("parameters", []), *headers]}


EVENTS_DOC = {
    200: {
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "One event.",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"enum": ["progress", *FINAL_STATES]},
                        "id": {"type": "string"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/JobStatus"},
                        },
                    },
                }
            }
        },
        "description": "`event: progress` with the job's status (JSON, without the result) at each change, then "
        "one last event named after the final status (`succeeded`, `failed`, `cancelled`) with the whole job, "
        "result included; a comment line every 15 s keeps idle connections open.",
    }
}


def accepted(
    job_id: str, status_json: bytes, replayed: bool = False, headers: dict[str, str] | None = None
) -> Response:
    """202 with the job's status and where to follow it (the answer of every request that makes a job);
    `replayed`: the job an earlier request with the same `Idempotency-Key` made."""
    return Response(
        status_json,
        status_code=202,
        media_type="application/json",
        headers={
            "Location": f"/v1/jobs/{job_id}",
            "Retry-After": "1",
            **({"Idempotent-Replayed": "true"} if replayed else {}),
            **(headers or {}),
        },
    )


@router.get("/{job_id}", response_model=JobStatus, responses=JOB_RESPONSES)
async def get_job(
    job_id: str,
    runtime: JobsRuntimeDep,
    owner: OwnerDep,
    result: Annotated[
        bool, Query(description="Include the result once the job has succeeded (left out otherwise).")
    ] = False,
) -> Response:
    """A job's status and progress; its error once it has failed, and with `?result=true` its result once it
    has succeeded (the last event of its event stream carries the result too)."""
    return Response(await runtime.jobs.status_json(job_id, owner, result), media_type="application/json")


@router.delete("/{job_id}", response_model=JobStatus, responses=JOB_RESPONSES)
async def cancel_job(job_id: str, runtime: JobsRuntimeDep, owner: OwnerDep) -> Response:
    """Cancel a job: it is `cancelled` at once and its work stops within one chunk. A finished job is left as
    it is (deleting twice is harmless)."""
    return Response(await runtime.jobs.cancel(job_id, owner, REQUEST_ID.get()), media_type="application/json")


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={**EVENTS_DOC, **JOB_RESPONSES})
async def job_events(
    job_id: str,
    runtime: JobsRuntimeDep,
    owner: OwnerDep,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=64,
            description="The id of the last event received (sent by EventSource when it reconnects): with jobs in "
            "Redis, the stream goes on from the event after it.",
        ),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events of a job's progress, until it ends."""
    return StreamingResponse(
        await runtime.jobs.events(job_id, owner, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
