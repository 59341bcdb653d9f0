"""Running jobs: one asyncio task per job drives its work on the model's worker, encodes the answer in the CPU
pool and stores it in the job; the task ends when the job does."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from service.core.errors import ServiceError
from service.core.logs import REQUEST_ID
from service.engine.work import ExplainJob
from service.engine.worker import ModelWorker
from service.http.parameters import ExplainPlan
from service.http.responses import build_explain
from service.http.runtime import ServiceRuntime
from service.imaging.decoding import DecodedImage
from service.jobs.store import Job

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


def _json_bytes(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def _stop(work: ExplainJob) -> None:
    work.future.cancel()  # not started yet: the worker skips it
    work.cancel_requested.set()  # long work: stops at its next chunk
