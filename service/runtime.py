"""The running service: settings, metrics, one worker per warm model, and the CPU thread pool."""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from model_store import LoadedModel
from service.errors import DeadlineExceeded, ModelNotFound
from service.jobs import ExplainJob, JobResult
from service.metrics import Metrics
from service.settings import Settings
from service.worker import ModelWorker

T = TypeVar("T")


class ServiceRuntime:
    def __init__(
        self,
        settings: Settings,
        models: dict[str, LoadedModel],
        metrics: Metrics,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fatal_error: BaseException | None = None
        self._on_fatal = on_fatal
        self.cpu_pool = ThreadPoolExecutor(max_workers=settings.cpu_workers, thread_name_prefix="cpu")
        self.workers = {
            name: ModelWorker(
                model,
                metrics,
                max_batch_size=settings.max_batch_size,
                max_batch_delay_s=settings.max_batch_delay_ms / 1000,
                max_queue=settings.max_queue,
                pass_chunk_size=settings.pass_chunk_size,
                evaluation_steps=settings.evaluation_steps,
                on_fatal=self._worker_died,
            )
            for name, model in models.items()
        }

    def _worker_died(self, error: BaseException) -> None:
        """An unrecoverable device error ended a worker: remember it and tell whoever runs the process."""
        self.fatal_error = error
        if self._on_fatal is not None:
            self._on_fatal(error)

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.cpu_pool.shutdown(wait=True, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return all(worker.alive for worker in self.workers.values())

    def worker(self, model: str) -> ModelWorker:
        """The worker of a warm model.

        Raises:
            ModelNotFound: no such model is served; the message lists the served ones.
        """
        try:
            return self.workers[model]
        except KeyError:
            raise ModelNotFound(f"unknown model '{model}'; served models: {sorted(self.workers)}") from None

    async def run_cpu(self, fn: Callable[..., T], *args: object) -> T:
        """Run CPU work (decode, encode) in the bounded thread pool, off the event loop and off the worker."""
        return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, fn, *args)

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    async def execute(self, worker: ModelWorker, job: ExplainJob) -> JobResult:
        """Queue a job and wait for its result until its deadline.

        Raises:
            ServiceUnavailable: queue full or worker stopped (at once).
            DeadlineExceeded: no result by the deadline; the job is cancelled if it has not started.
            ServiceError: whatever the worker failed the job with.
        """
        worker.submit(job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout=job.deadline - time.monotonic())
        except TimeoutError:
            job.future.cancel()
            raise DeadlineExceeded(f"no result within {self.settings.request_timeout_s:g} s") from None
