"""Errors of the client, each carrying what the service said.

ExplainError                       anything this client raises
├── APIError                       the service answered non-2xx: status, code, message, request_id,
│   │                              retry_after (seconds, from `Retry-After`), body (the parsed error body)
│   ├── BadRequestError (400)      unknown_method, unknown_class, invalid_parameter, cost_exceeded, ...
│   ├── AuthenticationError (401)  missing_api_key, invalid_api_key
│   ├── NotFoundError (404)        model_not_found, job_not_found, not_found
│   ├── PayloadTooLargeError (413) payload_too_large, image_too_large
│   ├── UnsupportedMediaTypeError (415)  unsupported_image, unsupported_media_type
│   ├── UnprocessableError (422)   invalid_image, invalid_base64, validation_error
│   ├── RateLimitError (429)       a gateway's rate limit
│   ├── InternalServerError (500)  internal_error, method_failed
│   ├── ServiceUnavailableError (503)  queue_full, not_ready, too_many_jobs, shutting_down, ...
│   └── GatewayTimeoutError (504)  timeout
├── ConnectionError                the service could not be reached, or the connection broke
├── TimeoutError                   no answer within the client's timeout
└── JobError                       a job ended `failed` or `cancelled`: job (its last status), code, message
"""

import email.utils
import time
from typing import Any

import httpx


class ExplainError(Exception):
    """Anything this client raises."""


class APIError(ExplainError):
    """A non-2xx answer, with the service's one error body `{"error": {"code", "message", "request_id"}}`."""

    status: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request id {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body


class BadRequestError(APIError):
    status = 400


class AuthenticationError(APIError):
    status = 401


class NotFoundError(APIError):
    status = 404


class PayloadTooLargeError(APIError):
    status = 413


class UnsupportedMediaTypeError(APIError):
    status = 415


class UnprocessableError(APIError):
    status = 422


class RateLimitError(APIError):
    status = 429


class InternalServerError(APIError):
    status = 500


class ServiceUnavailableError(APIError):
    status = 503


class GatewayTimeoutError(APIError):
    status = 504


class ConnectionError(ExplainError):  # noqa: A001 (the client's own, as httpx.ConnectError is httpx's)
    """The service could not be reached, or the connection broke before an answer."""


class TimeoutError(ExplainError):  # noqa: A001
    """No answer within the client's timeout."""


class JobError(ExplainError):
    """A job ended without a result (`failed` or `cancelled`); `job` is its last status."""

    def __init__(self, job: Any) -> None:
        error = job.error
        code = error.code if error is not None else job.status
        message = error.message if error is not None else f"the job ended {job.status}"
        super().__init__(f"job {job.id} {job.status}: {code}: {message}")
        self.job = job
        self.code = code
        self.message = message


_BY_STATUS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        NotFoundError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        UnprocessableError,
        RateLimitError,
        InternalServerError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}


def retry_after_s(response: httpx.Response, now: float | None = None) -> float | None:
    """`Retry-After` in seconds (RFC 9110: delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def api_error(response: httpx.Response) -> APIError:
    """The exception for a non-2xx `response` (also when a proxy answered with something else than the body)."""
    body: dict[str, Any] | None = None
    code, message = "http_error", response.text[:500] or response.reason_phrase
    request_id = response.headers.get("x-request-id")
    try:
        parsed = response.json()
        error = parsed["error"]
        code, message = str(error["code"]), str(error["message"])
        request_id = error.get("request_id") or request_id
        body = parsed
    except (ValueError, KeyError, TypeError):
        pass
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else BadRequestError
    return cls(response.status_code, code, message, request_id, retry_after_s(response), body)
