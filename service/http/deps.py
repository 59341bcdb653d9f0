"""FastAPI dependencies as named `Annotated` aliases.

RuntimeDep   the running service; refuses with 503 while starting (`not_ready`) or draining
             (`shutting_down`), and counts the request in flight until it is answered
JobsRuntimeDep  the same for reading and cancelling jobs, which keeps working while draining (the jobs
             accepted before the drain run to its end) and is not counted in flight (event streams are long)
OwnerDep     who is asking, as far as jobs are concerned: a digest of the API key ('' when keys are off)
API_KEY_REQUIRED   the API key check (401 when keys are on and the key is missing or wrong), declared on
                   whole routers (`dependencies=API_KEY_REQUIRED`) so that no route of theirs can forget it
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.core.errors import ServiceUnavailable
from service.core.lifecycle import Lifecycle
from service.http.auth import ApiKeys
from service.http.runtime import ServiceRuntime

_KEYS_NOTE = "Only enforced when the service is started with API keys (`EXPLAIN_API_KEYS`)."
_bearer = HTTPBearer(
    auto_error=False, scheme_name="BearerKey", description=f"`Authorization: Bearer <key>`. {_KEYS_NOTE}"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader", description=f"`X-API-Key: <key>`. {_KEYS_NOTE}"
)


def get_jobs_runtime(request: Request) -> ServiceRuntime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("the service is starting; models are not warm yet", code="not_ready")
    return runtime


async def get_runtime(request: Request) -> AsyncIterator[ServiceRuntime]:
    runtime = get_jobs_runtime(request)
    lifecycle: Lifecycle = request.app.state.lifecycle
    lifecycle.admit()
    try:
        yield runtime
    finally:
        lifecycle.release()


def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Let the request through when keys are off or it carries an accepted key; else 401 (see `ApiKeys.check`).

    Records who is asking (`request.state.owner`, a digest of the key; empty when keys are off): a job is
    visible only to the key that created it.
    """
    keys: ApiKeys = request.app.state.api_keys
    presented = bearer.credentials if bearer is not None else api_key
    keys.check(presented)
    request.state.owner = keys.owner(presented)


def get_owner(request: Request, _checked: Annotated[None, Depends(require_api_key)]) -> str:
    return request.state.owner


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
JobsRuntimeDep = Annotated[ServiceRuntime, Depends(get_jobs_runtime)]
OwnerDep = Annotated[str, Depends(get_owner)]
API_KEY_REQUIRED = [Depends(require_api_key)]
