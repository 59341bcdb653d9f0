"""The error responses each route documents in the OpenAPI schema."""

from api_schemas import ErrorBody

ERROR_RESPONSES = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad parameter: unknown method, layer or class, conflicting options, method not applicable."),
        (401, "API key missing or not accepted (only when the service runs with API keys)."),
        (404, "Unknown model."),
        (413, "Body over the byte limit, or image over the pixel limit."),
        (415, "Unsupported content type or image format."),
        (422, "Unreadable image or invalid base64."),
        (503, "Queue full, not ready or shutting down; retry after `Retry-After` seconds."),
        (504, "The request waited past its deadline and was not run."),
    )
}
