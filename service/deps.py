"""FastAPI dependencies as named `Annotated` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from service.errors import ServiceUnavailable
from service.runtime import ServiceRuntime


def get_runtime(request: Request) -> ServiceRuntime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("the service is starting; models are not warm yet", code="not_ready")
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
