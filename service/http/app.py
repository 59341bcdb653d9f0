"""The app factory: `create_app(settings)` builds the FastAPI app; models load in its lifespan, not at import."""

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path

from api_schemas import ErrorBody, ErrorDetail
from model_store import LoadedModel
from service.core.errors import ServiceError
from service.core.lifecycle import Lifecycle
from service.core.logs import REQUEST_ID
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.engine.loading import model_loaders
from service.http.answer_headers import AnswerHeadersMiddleware
from service.http.auth import ApiKeys
from service.http.job_runs import run_order
from service.http.openapi_contract import exact_openapi
from service.http.request_context import RequestContextMiddleware
from service.http.routes import catalog, docs, features, health, inference, jobs, page
from service.http.runtime import ServiceRuntime
from service.jobs.redis_runner import RedisJobRunner
from service.jobs.redis_store import JobOrder, RedisJobStore
from service.jobs.store import JobStore

logger = logging.getLogger(__name__)

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}
CORS_ALLOW_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "X-Request-ID", "Prefer", "Idempotency-Key")
CORS_EXPOSE_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "Location",
    "Server-Timing",
    "X-Instance",
    "Idempotent-Replayed",
    "Preference-Applied",
)


def create_app(settings: Settings | None = None, models: dict[str, LoadedModel] | None = None) -> FastAPI:
    """Build the app. `models` replaces loading from the store (tests pass tiny seeded models, already warm)."""
    settings = settings or Settings()
    metrics = Metrics()
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if models is not None:
            loaders = {name: (lambda model=model: model) for name, model in models.items()}
        else:
            loaders = model_loaders(settings)
        runtime = ServiceRuntime(settings, loaders, metrics)
        await asyncio.to_thread(runtime.start)
        lifecycle.at_grace_over(lambda: runtime.stop_workers(timeout_s=0))
        if isinstance(runtime.jobs, JobStore):
            memory_jobs = runtime.jobs
            lifecycle.also_wait_for(memory_jobs.unfinished)
            lifecycle.also_wait_for(lambda: memory_jobs.undelivered(ended_after=lifecycle.drain_started_at()))
            background = [asyncio.create_task(runtime.sweep_jobs())]
        else:
            runners = redis_runners(runtime, lambda: lifecycle.draining)
            lifecycle.also_wait_for(lambda: sum(runner.unfinished() for runner in runners))
            background = [asyncio.create_task(runner.run()) for runner in runners]
        app.state.runtime = runtime
        logger.info("serving models %s", sorted(loaders))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await runtime.end_jobs()
            app.state.runtime = None
            remaining_s = lifecycle.remaining_s()  # while draining, stopping must fit in what is left of the grace
            await asyncio.to_thread(runtime.stop, 10.0 if remaining_s is None else remaining_s)

    app = FastAPI(
        title="Explain service",
        version="1.0.0",
        description="Explanations of image classifiers (the CAM family, gradients, attributions, perturbations) from "
        "warm, batched models.",
        lifespan=lifespan,
        docs_url=None,  # served by service.http.routes.docs, with their assets from the service, not a CDN
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.runtime = None
    app.state.lifecycle = lifecycle
    app.state.api_keys = ApiKeys(settings.api_keys)
    app.include_router(health.router)
    app.include_router(catalog.router)
    app.include_router(inference.router)
    app.include_router(features.router)
    app.include_router(jobs.router)
    app.include_router(docs.router)
    app.include_router(page.router)
    app.include_router(page.labels_router)
    _install_error_handlers(app)
    generate_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = exact_openapi(generate_openapi(), api_keys_enabled=bool(settings.api_keys))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if settings.cors_origins:  # added last, so outermost: error answers (401, 503) carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            allow_credentials=False,
        )
    app.add_middleware(AnswerHeadersMiddleware, instance_id=settings.instance_id)  # outermost: every answer
    return app


def redis_runners(runtime: ServiceRuntime, draining: Callable[[], bool]) -> list[RedisJobRunner]:
    """One runner per model, taking this replica's share of the jobs in Redis (until the replica drains)."""
    assert isinstance(runtime.jobs, RedisJobStore)
    settings, store = runtime.settings, runtime.jobs
    consumer = f"{settings.instance_id}:{os.getpid()}:{secrets.token_hex(3)}"

    async def perform(order: JobOrder, on_progress: Callable[[int, int], None], set_stop) -> bytes:
        return await run_order(runtime, order, on_progress, set_stop)

    return [
        RedisJobRunner(store, model, consumer, settings.max_long_tasks, settings.job_lease_s, perform, draining)
        for model in runtime.workers
    ]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every HTTP method some route of `app` answers at `path` (for the `Allow` header of a 405)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", list)  # FastAPI >= 0.16x includes routers lazily
    methods: set[str] = set()
    for route in flatten(app.routes):
        if getattr(route, "methods", None) and compile_path(route.path)[0].match(path):
            methods |= route.methods
    return sorted(methods)


def error_response(request: Request, status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or REQUEST_ID.get()
    body = ErrorBody(error=ErrorDetail(code=code, message=message, request_id=request_id))
    return JSONResponse(body.model_dump(), status_code=status, headers={**(headers or {}), "X-Request-ID": request_id})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        if exc.status >= 500:
            logger.warning("%s: %s", exc.code, exc.message)
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(request, 422, "validation_error", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of one route; the path may have several
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return error_response(request, exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(request, 500, "internal_error", "internal error; it was logged with the request id")
