"""The error responses each route documents in the OpenAPI schema (every one is the one error body)."""

from typing import Any

from api_schemas import ErrorBody

_INTEGER = {"schema": {"type": "integer", "minimum": 0}}
_STRING = {"schema": {"type": "string"}}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": 'The challenge: `Bearer realm="explain"`.', **_STRING}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying.", **_INTEGER}},
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    | ({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {})
    for status, description in (
        (400, "Bad parameter: unknown method, layer or class, conflicting options, method not applicable."),
        (401, "API key missing or not accepted (only when the service runs with API keys)."),
        (404, "Unknown model or job."),
        (413, "Body over the byte limit, or image over the pixel limit."),
        (415, "Unsupported content type or image format."),
        (422, "Unreadable image or invalid base64."),
        (503, "Queue full, not ready, too many jobs or shutting down; retry after `Retry-After` seconds."),
        (504, "The request waited past its deadline and was not run."),
    )
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of these statuses."""
    return {status: ERROR_RESPONSES[status] for status in statuses}
