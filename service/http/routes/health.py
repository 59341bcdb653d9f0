"""Liveness, readiness and metrics.

`/healthz` and `/readyz` answer without an API key (probes); `/metrics` needs one when keys are on.
"""

from fastapi import APIRouter, Request, Response

from api_schemas import HealthStatus
from service.core.errors import ServiceUnavailable
from service.core.lifecycle import SHUTDOWN_RETRY_AFTER_S
from service.http.deps import API_KEY_REQUIRED
from service.http.routes.errors_doc import error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthStatus, response_model_exclude_none=True)
async def healthz() -> HealthStatus:
    """The process is alive and answering."""
    return HealthStatus(status="ok")


@router.get("/readyz", response_model=HealthStatus, responses=error_responses(503))
async def readyz(request: Request) -> HealthStatus:
    """Every model is warm and its worker alive, and the service is not draining for shutdown. With jobs in
    Redis, the body says whether Redis answers; the replica stays ready without it (synchronous requests work)."""
    if request.app.state.lifecycle.draining:
        raise ServiceUnavailable(
            "the service is shutting down", code="shutting_down", retry_after_s=SHUTDOWN_RETRY_AFTER_S
        )
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("models are still loading", code="not_ready")
    models = {name: worker.alive for name, worker in runtime.workers.items()}
    if not all(models.values()):
        down = sorted(name for name, alive in models.items() if not alive)
        raise ServiceUnavailable(f"workers not running for {down}", code="not_ready")
    return HealthStatus(status="ready", models=models, job_store=await runtime.jobs.health())


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=API_KEY_REQUIRED,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(401)},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (with an API key when keys are on; keep it off the public gateway anyway)."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
