"""One worker per model: the only code that touches the device, and the only thread that runs the model's torch
operations, from loading and warming it up to every batch.

One thread matters on a CPU: torch's OpenMP thread team belongs to the thread that first runs a parallel
operation, and a model loaded on one thread and served on another (or small torch operations on other threads
beside it) leaves several teams spinning for the same cores, which made one image 2.3x slower on two cores.

Requests put `ExplainJob`s on the model's bounded queue (`FairQueue`: round robin by API key); the worker
thread gathers batches (`collect_batch`) of at most the size that serves fastest (measured at warm-up and in
trials while serving: `service.engine.batch_sizing`), drops jobs whose client has gone or whose deadline has
passed, runs the batch and resolves each job's future.
A job whose extra passes span more than one chunk is long work instead (`service.engine.scheduler`): between two
batches the worker runs one chunk of long work, so that heavy requests never stall the cheap ones.

Faults stay as small as they can:
- a method that raises fails only the jobs that asked for it (`run_batch` returns their error);
- a batch that runs out of device memory, or fails in its shared passes, is split in halves and retried,
  outside the `except` block so that the failed attempt's memory is freed; a job that fails alone gets the
  error (503 `device_out_of_memory`, retryable, or 500);
- an unrecoverable device error (`torch.AcceleratorError`) ends the worker: queued and later jobs get 503,
  `/readyz` turns false, and `on_fatal` is told so that the process can exit for the orchestrator to restart it.
"""

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Literal, TypeVar

import torch

from model_store import LoadedModel
from service.core.errors import DeadlineExceeded, ServiceError, ServiceUnavailable
from service.core.prometheus import Metrics
from service.engine.batch_sizing import BatchSizer
from service.engine.batcher import collect_batch
from service.engine.device import OUT_OF_MEMORY, UNRECOVERABLE
from service.engine.explainer import run_batch
from service.engine.fair_queue import FairQueue
from service.engine.scheduler import DeviceCall, ExplainTask, LongWork
from service.engine.visualizations import VisualizationBatch, VisualizationOrder
from service.engine.work import ExplainJob, JobResult
from service.methods import find_applicable
from service.methods.passes import chunk_size_for

logger = logging.getLogger(__name__)
T = TypeVar("T")


ModelLoader = Callable[[], LoadedModel]


class ModelWorker:
    def __init__(
        self,
        name: str,
        load: ModelLoader,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue: int,
        pass_chunk_size: int | None = None,
        pass_chunk_ms: float = 50.0,
        evaluation_steps: int = 16,
        max_long_tasks: int = 4,
        max_long_tasks_per_owner: int | None = None,
        max_queue_per_owner: int | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self._load = load
        self.model: LoadedModel
        """The warm model, once `start` has returned."""
        self.visualizations: VisualizationBatch
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.batch_sizer = BatchSizer(max_batch_size, max_batch_size)
        """Most jobs per batch: the model's preferred batch size (measured when it was warmed) up to the limit,
        corrected while serving."""
        self.max_batch_delay_s = max_batch_delay_s
        self.pass_chunk_size = pass_chunk_size or 0
        """Images per chunk of extra passes; measured at load (`pass_chunk_ms`) when not given."""
        self.pass_chunk_ms = pass_chunk_ms
        self.evaluation_steps = evaluation_steps
        self.on_fatal = on_fatal
        self.queue: FairQueue[ExplainJob] = FairQueue(maxsize=max_queue)
        self.long_work = LongWork()
        self.max_long_tasks = max_long_tasks
        self.max_long_tasks_per_owner = max_long_tasks_per_owner or max_long_tasks
        self._long_count = 0  # long requests, jobs and calls admitted and not resolved
        self._long_by_owner: Counter[str] = Counter()
        self._long_lock = threading.Lock()
        self.max_queue_per_owner = min(max_queue_per_owner or max_queue, max_queue)
        self._stopping = threading.Event()
        self._dead = threading.Event()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._incoming = 0  # requests being decoded for this model; changed on the event loop's thread only
        self._thread = threading.Thread(target=self._run, name=f"worker-{name}", daemon=True)
        metrics.queue_depth.labels(model=name).set_function(self.queue.qsize)
        metrics.long_tasks.labels(model=name).set_function(lambda: self._long_count)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set() and not self._dead.is_set()

    def start(self) -> None:
        """Start the thread, which loads and warms the model; `wait_until_loaded` waits for it."""
        self._thread.start()

    def wait_until_loaded(self) -> None:
        """Block until the model is warm and served.

        Raises:
            Whatever loading raised (e.g. `ModelLoadError`), so that the service fails at start-up.
        """
        self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking batches, finish the one in hand, and fail what is still queued or running long with 503."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._fail_queued(ServiceUnavailable("the service is shutting down", code="worker_stopped"))

    def submit(self, job: ExplainJob) -> None:
        """Queue a job (as long work when its extra passes span more than one chunk), or refuse at once.

        Raises:
            ServiceUnavailable: the worker is not running (`worker_stopped`), the queue is full or the owner holds
                its share of it (`queue_full`), or `max_long_tasks` long tasks are running, or the owner's share
                of them (`too_many_jobs`).
        """
        if not self.alive:
            raise ServiceUnavailable(f"model '{self.name}' is not being served", code="worker_stopped")
        if job.extra_passes > self.pass_chunk_size:
            self._admit_long(job.future, job.owner)
            self.long_work.add(ExplainTask(self.model, job, self.pass_chunk_size, self.evaluation_steps))
        else:
            if self.queue.waiting_of(job.owner) >= self.max_queue_per_owner:
                raise ServiceUnavailable(
                    f"this key has {self.max_queue_per_owner} requests waiting on model '{self.name}', its share "
                    "of the queue; retry shortly",
                    code="queue_full",
                )
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                raise self.queue_full_error() from None
        self._fail_if_died()

    def visualize(self, order: VisualizationOrder) -> None:
        """Run a feature visualization, one step per turn of long work, batched with the model's others.

        Raises:
            ServiceUnavailable: `worker_stopped`, or `too_many_jobs` (see `submit`).
        """
        if not self.alive:
            raise self._stopped_error()
        self._admit_long(order.future, order.owner)
        self.visualizations.add(order)
        self._fail_if_died()

    def call(self, fn: Callable[[LoadedModel], T], owner: str = "") -> Future[T]:
        """Run `fn(model)` on the worker thread at the next turn of long work (between two batches), as `owner`'s.

        Raises:
            ServiceUnavailable: `worker_stopped`, or `too_many_jobs` (see `submit`).
        """
        if not self.alive:
            raise self._stopped_error()
        task = DeviceCall(self.model, fn, owner)
        self._admit_long(task.future, owner)
        self.long_work.add(task)
        self._fail_if_died()
        return task.future

    def _fail_if_died(self) -> None:
        """The worker died while work was being handed to it: nobody will take that work, fail it now."""
        if self._dead.is_set():
            self._fail_queued(self._stopped_error())

    def _admit_long(self, future: Future, owner: str) -> None:
        """Count long work in until `future` is resolved, or refuse it when `max_long_tasks` are running, or
        `max_long_tasks_per_owner` of this owner's (so that one key at its bound leaves the others theirs).

        Raises:
            ServiceUnavailable: `too_many_jobs`.
        """
        with self._long_lock:
            if self._long_by_owner[owner] >= self.max_long_tasks_per_owner:
                raise ServiceUnavailable(
                    f"this key runs {self.max_long_tasks_per_owner} long requests or jobs on model '{self.name}' "
                    "already, its share; retry later",
                    code="too_many_jobs",
                    retry_after_s=5,
                )
            if self._long_count >= self.max_long_tasks:
                raise ServiceUnavailable(
                    f"model '{self.name}' runs {self.max_long_tasks} long requests or jobs already; retry later",
                    code="too_many_jobs",
                    retry_after_s=5,
                )
            self._long_count += 1
            self._long_by_owner[owner] += 1
        future.add_done_callback(lambda _: self._long_resolved(owner))

    def _long_resolved(self, owner: str) -> None:
        with self._long_lock:
            self._long_count -= 1
            self._long_by_owner[owner] -= 1
            if not self._long_by_owner[owner]:
                del self._long_by_owner[owner]

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Count a request on its way to the queue (being decoded): the batcher waits for companions only while
        some are on their way."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    def queue_full_error(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"model '{self.name}' has {self.queue.maxsize} requests waiting; retry shortly", code="queue_full"
        )

    def _stopped_error(self) -> ServiceUnavailable:
        return ServiceUnavailable(f"the worker of model '{self.name}' has stopped", code="worker_stopped")

    def _run(self) -> None:
        try:
            self.model = self._load()
            self.batch_sizer = BatchSizer(self.model.preferred_batch_size(self.max_batch_size), self.max_batch_size)
            self.metrics.batch_limit.labels(model=self.name).set(self.batch_sizer.size)
            if not self.pass_chunk_size:
                self.pass_chunk_size = chunk_size_for(self.model, self.pass_chunk_ms)
            logger.info(
                "model %s: batches of up to %d images, extra passes in chunks of %d images",
                self.name,
                self.batch_sizer.size,
                self.pass_chunk_size,
            )
            self.visualizations = VisualizationBatch(self.model, self.long_work.add)
            find_applicable(self.model.module)
        except BaseException as exc:
            logger.critical("model %s could not be loaded: %s", self.name, exc)
            self._load_error = exc
            self._dead.set()
            return
        finally:
            self._loaded.set()
        try:
            free_since = time.perf_counter()  # the end of the last batch, long work after it not counted
            while not self._stopping.is_set():
                limit = self.batch_sizer.next_limit()
                batch = collect_batch(
                    self.queue,
                    limit,
                    self.max_batch_delay_s,
                    poll_s=0.0 if self.long_work.pending else 0.1,
                    companions_coming=self._companions_coming,
                )
                if batch:
                    self._serve(batch)
                    self._record_batch(limit, len(batch), time.perf_counter() - free_since)
                    free_since = time.perf_counter()
                else:
                    self.batch_sizer.idle(time.perf_counter() - free_since)
                chunk_started = time.perf_counter()
                self.long_work.run_one_chunk()
                free_since += time.perf_counter() - chunk_started
            self.long_work.abandon_all(ServiceUnavailable("the service is shutting down", code="worker_stopped"))
        except BaseException as exc:
            logger.critical("the worker of model %s died: %r", self.name, exc, exc_info=True)
            self._dead.set()
            self._fail_queued(self._stopped_error())
            if self.on_fatal is not None:
                self.on_fatal(exc)
        finally:
            self._dead.set()

    def _record_batch(self, limit: int, images: int, cycle_s: float) -> None:
        before = self.batch_sizer.size
        if self.batch_sizer.record(limit, images, cycle_s):
            self.metrics.batch_limit.labels(model=self.name).set(self.batch_sizer.size)
            logger.info(
                "model %s: batches of up to %d images from now on, served faster than batches of %d",
                self.name,
                self.batch_sizer.size,
                before,
            )

    def _companions_coming(self) -> bool:
        return self._incoming > 0

    def _serve(self, batch: list[ExplainJob]) -> None:
        now = time.monotonic()
        live: list[ExplainJob] = []
        for job in batch:
            if not job.future.set_running_or_notify_cancel():
                continue  # the client has gone
            if job.deadline < now:
                job.future.set_exception(DeadlineExceeded("the request waited past its deadline; it was not run"))
                continue
            if job.on_progress is not None:
                job.on_progress(0, max(job.extra_passes, 1))
            live.append(job)
        try:
            self._serve_splitting(live)
        except BaseException:
            for job in live:
                if not job.future.done():
                    job.future.set_exception(self._stopped_error())
            raise

    def _serve_splitting(self, live: list[ExplainJob]) -> None:
        pending = [live] if live else []
        while pending:
            jobs = pending.pop()
            failure = self._attempt(jobs)
            if failure is None:
                continue
            # Only the kind of failure is kept, never the exception: its traceback would hold the failed attempt's
            # frames and their tensors (activations, gradients) alive while the halves run.
            if failure == "out_of_memory" and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(jobs) > 1:
                half = len(jobs) // 2
                pending += [jobs[half:], jobs[:half]]
            elif failure == "out_of_memory":
                jobs[0].future.set_exception(
                    ServiceUnavailable(
                        "the device ran out of memory for this request alone; retry later",
                        code="device_out_of_memory",
                    )
                )
            else:
                jobs[0].future.set_exception(ServiceError("the explanation failed; the error was logged"))

    def _attempt(self, jobs: list[ExplainJob]) -> Literal["out_of_memory", "failed"] | None:
        """Run `jobs` as one batch and deliver; returns how it failed if the batch must be split or failed."""
        labels = {"model": self.name}
        try:
            outcomes = run_batch(self.model, jobs, self.pass_chunk_size, self.evaluation_steps)
        except UNRECOVERABLE:
            raise
        except ServiceError as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return None
        except Exception as exc:
            logger.warning(  # the exception's text only: a handler that keeps records would keep its tensors
                "batch of %d failed on model %s: %s",
                len(jobs),
                self.name,
                repr(exc),
                exc_info=not isinstance(exc, OUT_OF_MEMORY),
            )
            return "out_of_memory" if isinstance(exc, OUT_OF_MEMORY) else "failed"
        self.metrics.batch_size.labels(**labels).observe(len(jobs))
        timed = next((o for o in outcomes if isinstance(o, JobResult)), None)
        if timed is not None:
            self.metrics.inference_seconds.labels(**labels).observe(timed.inference_ms / 1000)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, ServiceError):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        return None

    def _fail_queued(self, error: ServiceError) -> None:
        """Fail the queued jobs, and the long work too unless the worker thread is running (it abandons its long
        work itself when its loop ends: a task's chunk is never run and closed from two threads at once)."""
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            self.long_work.abandon_all(error)
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)
