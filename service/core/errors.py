"""Domain errors of the service; one handler (in `service.http.app`) renders them as the one error body.

    ServiceError (500)                internal_error, method_failed; status, code, message, headers
    ├── BadRequest (400)              bad_request, invalid_json, invalid_multipart, missing_image,
    │                                 invalid_idempotency_key
    │   ├── UnknownMethod             unknown_method
    │   ├── UnknownLayer              unknown_layer
    │   ├── UnknownClass              unknown_class
    │   ├── InvalidParameter          invalid_parameter
    │   ├── ConflictingParameters     conflicting_parameters
    │   ├── MethodNotApplicable       method_not_applicable
    │   ├── CostExceeded              cost_exceeded
    │   └── AnswerTooLarge            answer_too_large
    ├── Unauthorized (401)            missing_api_key, invalid_api_key  (with WWW-Authenticate: Bearer)
    ├── ModelNotFound (404)           model_not_found
    ├── JobNotFound (404)             job_not_found
    ├── AssetNotFound (404)           not_found  (a page or documentation file by a name not served)
    ├── PayloadTooLarge (413)         payload_too_large, image_too_large
    ├── UnsupportedMediaType (415)    unsupported_media_type, unsupported_image
    ├── InvalidImage (422)            invalid_image, invalid_base64
    ├── IdempotencyKeyReused (422)    idempotency_key_reused
    ├── ClientDisconnected (499)      client_closed_request  (nobody reads it; counted in the metrics)
    ├── Cancelled (499)               cancelled  (a job deleted, or long work whose client left)
    ├── ServiceUnavailable (503)      queue_full, not_ready, worker_stopped, shutting_down,
    │                                 device_out_of_memory, too_many_jobs  (with Retry-After)
    └── DeadlineExceeded (504)        timeout

Code below the routes raises these, never `HTTPException`.
"""


class ServiceError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class MethodFailed(ServiceError):
    code = "method_failed"


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class UnknownMethod(BadRequest):
    code = "unknown_method"


class UnknownLayer(BadRequest):
    code = "unknown_layer"


class UnknownClass(BadRequest):
    code = "unknown_class"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class ConflictingParameters(BadRequest):
    code = "conflicting_parameters"


class MethodNotApplicable(BadRequest):
    code = "method_not_applicable"


class CostExceeded(BadRequest):
    code = "cost_exceeded"


class AnswerTooLarge(BadRequest):
    code = "answer_too_large"


class Unauthorized(ServiceError):
    """No API key, or not one of the accepted keys (RFC 6750: the challenge names the Bearer scheme)."""

    status = 401
    code = "missing_api_key"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        challenge = 'Bearer realm="explain"'
        if code == "invalid_api_key":
            challenge += ', error="invalid_token"'
        super().__init__(message, code=code, headers={"WWW-Authenticate": challenge})


class ModelNotFound(ServiceError):
    status = 404
    code = "model_not_found"


class JobNotFound(ServiceError):
    status = 404
    code = "job_not_found"


class AssetNotFound(ServiceError):
    status = 404
    code = "not_found"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class InvalidImage(ServiceError):
    status = 422
    code = "invalid_image"


class IdempotencyKeyReused(ServiceError):
    """An `Idempotency-Key` sent again with another request (IETF draft-ietf-httpapi-idempotency-key-header)."""

    status = 422
    code = "idempotency_key_reused"


class ClientDisconnected(ServiceError):
    """The client closed the connection before its answer was ready (nginx's 499); its queued job was dropped."""

    status = 499
    code = "client_closed_request"


class Cancelled(ServiceError):
    """Work stopped on request before it finished: its remaining chunks were not run."""

    status = 499
    code = "cancelled"


class ServiceUnavailable(ServiceError):
    status = 503
    code = "not_ready"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: int = 1, close_connection: bool = False
    ) -> None:
        headers = {"Retry-After": str(retry_after_s)}
        if close_connection:
            headers["Connection"] = "close"
        super().__init__(message, code=code, headers=headers)


class DeadlineExceeded(ServiceError):
    status = 504
    code = "timeout"
