"""Liveness, readiness and metrics."""

from fastapi import APIRouter, Request, Response

from api_schemas import HealthStatus
from service.errors import ServiceUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthStatus)
async def healthz() -> HealthStatus:
    """The process is alive and answering."""
    return HealthStatus(status="ok")


@router.get("/readyz", response_model=HealthStatus, responses={503: {"description": "Not ready."}})
async def readyz(request: Request) -> HealthStatus:
    """Every model is warm and its worker alive."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("models are still loading", code="not_ready")
    models = {name: worker.alive for name, worker in runtime.workers.items()}
    if not all(models.values()):
        down = sorted(name for name, alive in models.items() if not alive)
        raise ServiceUnavailable(f"workers not running for {down}", code="not_ready")
    return HealthStatus(status="ready", models=models)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (internal: expose to the scraper, not through the public gateway)."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
