"""The running service: settings, metrics, one worker per warm model, and the CPU thread pool."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from service.core.errors import ClientDisconnected, DeadlineExceeded, ModelNotFound, ServiceUnavailable
from service.core.prometheus import Metrics
from service.core.settings import Settings
from service.engine.work import ExplainJob, JobResult
from service.engine.worker import ModelLoader, ModelWorker
from service.http.cpu_pool import CpuPool
from service.jobs.redis_store import RedisJobStore
from service.jobs.store import JobStore

T = TypeVar("T")
JOB_SWEEP_S = 5.0
logger = logging.getLogger(__name__)


def job_store(settings: Settings) -> "JobStore | RedisJobStore":
    """The jobs' store the settings name: this replica's memory, or Redis (`JOB_STORE_URL`)."""
    store = JobStore(
        settings.max_jobs,
        settings.max_jobs_per_tenant,
        settings.job_ttl_s,
        settings.job_min_keep_s,
        max_bytes=settings.max_job_bytes,
        max_bytes_per_tenant=settings.max_job_bytes_per_tenant,
    )
    if settings.job_store_url is None:
        return store
    url, unfinished_ttl_s = settings.job_store_url.get_secret_value(), settings.job_timeout_s + settings.job_ttl_s
    return RedisJobStore(url, store.limits, settings.job_ttl_s, unfinished_ttl_s)


class ServiceRuntime:
    def __init__(self, settings: Settings, loaders: dict[str, ModelLoader], metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fatal_error: BaseException | None = None
        """An unrecoverable device error that ended a worker; the server exits non-zero on it."""
        self.cpu_pool = CpuPool(settings.cpu_workers)
        self.jobs: JobStore | RedisJobStore = job_store(settings)
        self._job_tasks: set[asyncio.Task] = set()
        self._decoding_bytes = 0
        self.workers = {
            name: ModelWorker(
                name,
                load,
                metrics,
                max_batch_size=settings.max_batch_size,
                max_batch_delay_s=settings.max_batch_delay_ms / 1000,
                max_queue=settings.max_queue,
                pass_chunk_size=settings.pass_chunk_size,
                pass_chunk_ms=settings.pass_chunk_ms,
                evaluation_steps=settings.evaluation_steps,
                max_long_tasks=settings.max_long_tasks,
                max_long_tasks_per_owner=settings.long_tasks_per_tenant,
                max_queue_per_owner=settings.queue_per_tenant,
                on_fatal=self._worker_died,
            )
            for name, load in loaders.items()
        }

    def _worker_died(self, error: BaseException) -> None:
        self.fatal_error = error

    def start(self) -> None:
        """Start every worker and wait until each has loaded its model (on its own thread, in parallel).

        Raises:
            Whatever a model's loading raised; the workers already started are stopped.
        """
        for worker in self.workers.values():
            worker.start()
        try:
            for worker in self.workers.values():
                worker.wait_until_loaded()
        except BaseException:
            self.stop_workers(timeout_s=0)
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every worker (each may finish the batch in hand for up to `timeout_s`) and the CPU pool."""
        self.stop_workers(timeout_s)
        self.cpu_pool.shutdown()

    def spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        """Run a job's coroutine in the background (on the event loop), keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    async def sweep_jobs(self) -> None:
        """Forget expired jobs every few seconds (until cancelled), so that their results do not wait for the
        next request to be let go (Redis expires its own)."""
        while isinstance(self.jobs, JobStore):
            await asyncio.sleep(min(self.settings.job_ttl_s, JOB_SWEEP_S))
            self.jobs.forget_expired()

    async def end_jobs(self) -> None:
        """Fail the unfinished jobs with 503 `shutting_down` (the service is stopping: a drain has let them run
        until now), stop their work, and wait for their tasks to end. Jobs in Redis are not this replica's to
        fail: its runners have handed back what they had not finished."""
        if isinstance(self.jobs, JobStore):
            self.jobs.fail_unfinished(ServiceUnavailable("the service is shutting down", code="shutting_down"))
        for task in list(self._job_tasks):
            task.cancel()
        await asyncio.gather(*self._job_tasks, return_exceptions=True)
        if isinstance(self.jobs, RedisJobStore):
            await self.jobs.close()

    def stop_workers(self, timeout_s: float) -> None:
        """Stop taking batches: queued jobs fail at once with 503 `worker_stopped`; a batch in hand may finish.

        Waits up to `timeout_s` per worker for the batch in hand (0: not at all, so the event loop may call it).
        """
        for worker in self.workers.values():
            worker.stop(timeout_s)

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

    def worker_with_room(self, model: str) -> ModelWorker:
        """The worker of a warm model whose queue has room now, checked before the body is read and decoded.

        Under overload this makes a refusal cost almost nothing; `ModelWorker.submit` still decides, since the
        queue may fill up meanwhile.

        Raises:
            ModelNotFound: no such model.
            ServiceUnavailable: `queue_full`.
        """
        worker = self.worker(model)
        if worker.queue.full():
            raise worker.queue_full_error()
        return worker

    @contextmanager
    def decoding(self, size: int) -> Iterator[None]:
        """Count `size` bytes of a posted image toward `MAX_DECODING_BYTES` while it is decoded (on the event loop's
        thread only); the first image is always let in, so that one as large as a body may be is never refused.

        Raises:
            ServiceUnavailable: `queue_full`, the images being decoded already take the bound.
        """
        if self._decoding_bytes and self._decoding_bytes + size > self.settings.max_decoding_bytes:
            raise ServiceUnavailable(
                f"{self._decoding_bytes / 1024 / 1024:.1f} MiB of posted images are being decoded (the bound is "
                f"{self.settings.max_decoding_bytes / 1024 / 1024:.1f} MiB); retry shortly",
                code="queue_full",
            )
        self._decoding_bytes += size
        try:
            yield
        finally:
            self._decoding_bytes -= size

    async def run_cpu(self, fn: Callable[..., T], *args: object, owner: str = "") -> T:
        """Run CPU work (decode, encode, parse) in the CPU pool, in `owner`'s turn, off the event loop and off the
        worker."""
        return await asyncio.wrap_future(self.cpu_pool.submit(owner, fn, *args))

    def cpu_for(self, owner: str) -> Callable[..., Awaitable]:
        """`run_cpu` in `owner`'s turn: what a request's CPU work goes through."""
        return partial(self.run_cpu, owner=owner)

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    async def execute(
        self, worker: ModelWorker, job: ExplainJob, disconnected: Callable[[], Awaitable[object]] | None = None
    ) -> JobResult:
        """Queue a job and wait for its result until its deadline or until the client goes away.

        Args:
            disconnected: an awaitable factory that returns once the client has closed the connection (e.g.
                one that awaits ASGI `receive` until `http.disconnect`); None to not watch.

        Raises:
            ServiceUnavailable: queue full or worker stopped (at once).
            DeadlineExceeded: no result by the deadline; the job is cancelled if it has not started, and long work
                stops at its next chunk.
            ClientDisconnected: the client went away; the job is cancelled if it has not started, so that the
                worker skips it (`set_running_or_notify_cancel`), and long work stops at its next chunk.
            ServiceError: whatever the worker failed the job with.
        """
        worker.submit(job)
        result = asyncio.wrap_future(job.future)  # cancelling it cancels the job unless the worker has started it
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        waiting = {result} if watcher is None else {result, watcher}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=job.deadline - time.monotonic(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if watcher is not None:
                watcher.cancel()
            if not result.done():
                result.cancel()
                job.cancel_requested.set()  # long work stops between two chunks
        if result in done:
            return result.result()
        if watcher is not None and watcher in done:
            logger.info("the client went away; its job is dropped unless the worker had started it")
            raise ClientDisconnected("the client closed the connection")
        raise DeadlineExceeded(f"no result within {self.settings.request_timeout_s:g} s")
