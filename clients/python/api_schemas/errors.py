"""The one error body, used for every non-2xx answer."""

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable code, e.g. `unknown_method`, `queue_full`.")
    message: str = Field(description="What went wrong and, where it helps, the valid choices.")
    request_id: str = Field(description="The request id, also sent as the `X-Request-ID` header.")


class ErrorBody(BaseModel):
    error: ErrorDetail
