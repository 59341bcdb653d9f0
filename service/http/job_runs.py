"""Running jobs on this replica's workers.

- Jobs in memory: one asyncio task per job drives its work on the model's worker, encodes the answer in the CPU
  pool and stores it in the job; the task ends when the job does.
- Jobs in Redis: `run_order` runs an order a replica took from the queue (`service.jobs.redis_runner`): the
  request prepared again from what was kept with it, as the route prepared it, then the same work and answer.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TypeVar

from pydantic import BaseModel

from api_schemas import ExplainParameters
from api_schemas.jobs import VisualizationRequest
from service.core.errors import Cancelled, ServiceError
from service.core.logs import REQUEST_ID
from service.engine.visualizations import VisualizationOrder
from service.engine.work import ExplainJob
from service.engine.worker import ModelWorker
from service.http.explain_preparation import PostedFiles, plan_request, prepare_explain
from service.http.parameters import ExplainPlan
from service.http.responses import build_explain
from service.http.runtime import ServiceRuntime
from service.http.visualization_work import plan_visualization, visualization_answer
from service.imaging.decoding import DecodedImage
from service.jobs.redis_store import JobOrder
from service.jobs.store import Job

T = TypeVar("T")
logger = logging.getLogger(__name__)


def start_explain_job(
    runtime: ServiceRuntime, worker: ModelWorker, job: Job, work: ExplainJob, image: DecodedImage, plan: ExplainPlan
) -> None:
    """Queue `work` on the worker now (so that a full queue refuses the request at once), and finish `job` with
    the explain answer in the background.

    Raises:
        ServiceUnavailable: the worker refused the work (queue full, too many long tasks, stopped).
    """
    worker.submit(work)
    job.stop_work = lambda: _stop(work)

    async def answer() -> BaseModel:
        result = await asyncio.wrap_future(work.future)
        top = runtime.settings.top_classes
        return await runtime.run_cpu(build_explain, worker.model, image, result, plan, top, {}, owner=job.owner)

    spawn_job(runtime, job, answer)


def spawn_job(runtime: ServiceRuntime, job: Job, answer: Callable[[], Awaitable[BaseModel]]) -> None:
    """Finish `job` with what `answer()` returns (or its error), in the background; the result is serialised
    once, in the CPU pool, and kept as bytes."""
    request_id = REQUEST_ID.get()

    async def run() -> None:
        try:
            result = await answer()
            job.succeed(await runtime.run_cpu(_json_bytes, result, owner=job.owner))
        except ServiceError as exc:
            job.fail(exc, request_id)
        except asyncio.CancelledError:
            job.fail(ServiceError("the service stopped before the job ended", code="worker_stopped"), request_id)
            raise
        except Exception:
            logger.exception("job %s failed", job.id)
            job.fail(ServiceError("the job failed; the error was logged"), request_id)

    runtime.spawn(run())


async def run_order(
    runtime: ServiceRuntime,
    order: JobOrder,
    on_progress: Callable[[int, int], None],
    set_stop: Callable[[Callable[[], None]], None],
) -> bytes:
    """Run a job's order on this replica and return its answer's JSON.

    Raises:
        ServiceUnavailable: the worker refused the work (full, or stopping): the job goes back to the queue.
        Cancelled: the work was stopped (`set_stop`'s callable was called).
        ServiceError: what the work failed with.
    """
    worker = runtime.worker(order.model)
    run_cpu = runtime.cpu_for(order.owner)
    deadline = time.monotonic() + runtime.settings.job_timeout_s
    if order.kind == "visualization":
        body = VisualizationRequest.model_validate_json(order.parameters)
        spec, _ = plan_visualization(runtime, worker, body)
        visualization = VisualizationOrder(spec, on_progress=on_progress, owner=order.owner, deadline=deadline)
        worker.visualize(visualization)
        set_stop(visualization.cancel_requested.set)
        answer: BaseModel = await _stoppable(visualization.future, visualization_answer(runtime, worker, visualization))
    else:
        params = ExplainParameters.model_validate_json(order.parameters)
        plan = plan_request(runtime, worker, params)
        files = PostedFiles(order.files["image"], order.files.get("reference"), order.files.get("mask"))
        prepared = await prepare_explain(
            runtime, worker, run_cpu, params, plan, files, order.owner, order.request_id, deadline
        )
        work = replace(prepared.work, on_progress=on_progress)
        worker.submit(work)
        set_stop(lambda: _stop(work))
        result = await _stoppable(work.future, asyncio.wrap_future(work.future))
        top = runtime.settings.top_classes
        answer = await run_cpu(build_explain, worker.model, prepared.image, result, plan, top, {})
    return await run_cpu(_json_bytes, answer)


async def _stoppable(future: Future, outcome: Awaitable[T]) -> T:
    """`outcome`, where the work's `future` cancelled before it started (stopped) is `Cancelled`."""
    try:
        return await outcome
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if future.cancelled() and (task is None or not task.cancelling()):
            raise Cancelled("the job's work was stopped before it started") from None
        raise


def _json_bytes(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def _stop(work: ExplainJob) -> None:
    work.future.cancel()  # not started yet: the worker skips it
    work.cancel_requested.set()  # long work: stops at its next chunk
