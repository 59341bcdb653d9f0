"""Domain errors of the service; one handler (in `service.app`) renders them as the one error body.

    ServiceError (500)                internal_error, method_failed; status, code, message, headers
    ├── BadRequest (400)              bad_request, invalid_json, invalid_multipart, missing_image
    │   ├── UnknownMethod             unknown_method
    │   ├── UnknownLayer              unknown_layer
    │   ├── UnknownClass              unknown_class
    │   ├── InvalidParameter          invalid_parameter
    │   ├── ConflictingParameters     conflicting_parameters
    │   ├── MethodNotApplicable       method_not_applicable
    │   └── CostExceeded              cost_exceeded
    ├── ModelNotFound (404)           model_not_found
    ├── PayloadTooLarge (413)         payload_too_large, image_too_large
    ├── UnsupportedMediaType (415)    unsupported_media_type, unsupported_image
    ├── InvalidImage (422)            invalid_image, invalid_base64
    ├── ServiceUnavailable (503)      queue_full, not_ready, worker_stopped, device_out_of_memory  (Retry-After)
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


class ModelNotFound(ServiceError):
    status = 404
    code = "model_not_found"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class InvalidImage(ServiceError):
    status = 422
    code = "invalid_image"


class ServiceUnavailable(ServiceError):
    status = 503
    code = "not_ready"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after_s)})


class DeadlineExceeded(ServiceError):
    status = 504
    code = "timeout"
