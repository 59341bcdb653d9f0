"""A typed Python client of the explain service (sync and async, over httpx), and the `explain` command line.

    from explain_client import ExplainClient

    with ExplainClient("http://127.0.0.1:8000", api_key=None) as client:
        answer = client.explain("efficientnet_lite0", "cat.jpg", method=["grad_cam", "cam"], top_k=3)
        for item in answer.explanations:
            print(item.method, item.class_.label, item.map_array().shape)
            item.overlay_image().save(f"{item.method}-{item.class_.index}.png")

Answers are the `api_schemas` wire models with helpers (`map_array()`, `overlay_image()`); errors are
`explain_client.errors.APIError` subclasses carrying the service's code, message and request id. No torch needed.
"""

from explain_client._retry import RetryPolicy
from explain_client.async_client import AsyncExplainClient
from explain_client.client import ExplainClient
from explain_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionError,
    ExplainError,
    GatewayTimeoutError,
    InternalServerError,
    JobError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    TimeoutError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)
from explain_client.models import (
    ActivationsResponse,
    ExplainResponse,
    Explanation,
    FiltersResponse,
    JobStatus,
    MethodInfo,
    ModelInfo,
    PredictResponse,
    VisualizationResult,
)

__all__ = [
    "APIError",
    "ActivationsResponse",
    "AsyncExplainClient",
    "AuthenticationError",
    "BadRequestError",
    "ConnectionError",
    "ExplainClient",
    "ExplainError",
    "ExplainResponse",
    "Explanation",
    "FiltersResponse",
    "GatewayTimeoutError",
    "InternalServerError",
    "JobError",
    "JobStatus",
    "MethodInfo",
    "ModelInfo",
    "NotFoundError",
    "PayloadTooLargeError",
    "PredictResponse",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "TimeoutError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
    "VisualizationResult",
]
