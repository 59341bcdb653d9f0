"""Jobs: `GET /v1/jobs/{id}`, its Server-Sent Events, and `DELETE` to cancel.

Jobs are made by `POST /v1/models/{model}/visualizations` and by an explain request sent with
`Prefer: respond-async` (RFC 7240); both answer 202 with `Location: /v1/jobs/{id}`.
"""

from collections.abc import AsyncIterator

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api_schemas.jobs import JobStatus
from service.core.logs import REQUEST_ID
from service.http.deps import API_KEY_REQUIRED, JobsRuntimeDep, OwnerDep
from service.http.routes.errors_doc import error_responses
from service.jobs.store import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=API_KEY_REQUIRED)
KEEP_ALIVE_S = 15.0
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_RESPONSES = error_responses(401, 404, 503)
ACCEPTED_DOC = {
    202: {
        "model": JobStatus,
        "description": "Accepted as a job: follow it at `Location` (its status, events, or DELETE to cancel).",
        "headers": {
            "Location": {"description": "`/v1/jobs/{id}`", "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds before polling.", "schema": {"type": "integer", "minimum": 0}},
        },
    }
}


def with_prefer_header(doc: dict) -> dict:
    """`doc` (an operation's `openapi_extra`) with the `Prefer` header that turns the request into a job."""
    prefer = {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`respond-async` (RFC 7240): answer 202 at once with a job instead of waiting for the result.",
    }
    return {**doc, "parameters": [*doc.get("parameters", []), prefer]}


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


def accepted(job: Job) -> Response:
    """202 with the job and where to follow it (the answer of every request that makes a job)."""
    return Response(
        status_json(job),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/jobs/{job.id}", "Retry-After": "1"},
    )


@router.get("/{job_id}", response_model=JobStatus, responses=JOB_RESPONSES)
async def get_job(job_id: str, runtime: JobsRuntimeDep, owner: OwnerDep) -> Response:
    """A job's status and progress; its result once it has succeeded, its error once it has failed."""
    job = runtime.jobs.get(job_id, owner)
    return Response(status_json(job), media_type="application/json")


@router.delete("/{job_id}", response_model=JobStatus, responses=JOB_RESPONSES)
async def cancel_job(job_id: str, runtime: JobsRuntimeDep, owner: OwnerDep) -> Response:
    """Cancel a job: it is `cancelled` at once and its work stops within one chunk. A finished job is left as
    it is (deleting twice is harmless)."""
    job = runtime.jobs.get(job_id, owner)
    job.cancel(REQUEST_ID.get())
    return Response(status_json(job), media_type="application/json")


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={**EVENTS_DOC, **JOB_RESPONSES})
async def job_events(job_id: str, runtime: JobsRuntimeDep, owner: OwnerDep) -> StreamingResponse:
    """Server-Sent Events of a job's progress, until it ends."""
    job = runtime.jobs.get(job_id, owner)
    return StreamingResponse(
        _events(job),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def status_json(job: Job, with_result: bool = True) -> str:
    return job.status_model().model_dump_json(by_alias=True, exclude=None if with_result else {"result"})


async def _events(job: Job) -> AsyncIterator[str]:
    seen = -1
    while True:
        if job.version != seen:
            seen = job.version
            if job.finished:
                yield f"event: {job.status}\nid: {seen}\ndata: {status_json(job)}\n\n"
                return
            yield f"event: progress\nid: {seen}\ndata: {status_json(job, with_result=False)}\n\n"
        await job.wait_for_change(seen, KEEP_ALIVE_S)
        if job.version == seen:
            yield ": keep-alive\n\n"
