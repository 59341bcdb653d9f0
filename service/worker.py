"""One worker per model: the only code that touches the device.

Requests put `ExplainJob`s on the model's bounded queue; the worker thread gathers batches (`collect_batch`),
drops jobs whose client has gone or whose deadline has passed, runs the batch and resolves each job's future.
"""

import logging
import queue
import threading
import time

from model_store import LoadedModel
from service.batcher import collect_batch
from service.errors import DeadlineExceeded, ServiceError, ServiceUnavailable
from service.explainer import run_batch
from service.jobs import ExplainJob
from service.metrics import Metrics

logger = logging.getLogger(__name__)


class ModelWorker:
    def __init__(
        self,
        model: LoadedModel,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue: int,
        pass_chunk_size: int = 32,
        evaluation_steps: int = 16,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.pass_chunk_size = pass_chunk_size
        self.evaluation_steps = evaluation_steps
        self.queue: queue.Queue[ExplainJob] = queue.Queue(maxsize=max_queue)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"worker-{model.name}", daemon=True)
        metrics.queue_depth.labels(model=model.name).set_function(self.queue.qsize)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking batches, finish the one in hand, and fail what is still queued with 503."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._fail_queued(ServiceUnavailable("the service is shutting down", code="worker_stopped"))

    def submit(self, job: ExplainJob) -> None:
        """Queue a job, or refuse at once.

        Raises:
            ServiceUnavailable: the worker is not running (`worker_stopped`) or the queue is full (`queue_full`).
        """
        if not self.alive:
            raise ServiceUnavailable(f"model '{self.model.name}' is not being served", code="worker_stopped")
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise ServiceUnavailable(
                f"model '{self.model.name}' has {self.queue.maxsize} requests waiting; retry shortly",
                code="queue_full",
            ) from None

    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = collect_batch(self.queue, self.max_batch_size, self.max_batch_delay_s)
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[ExplainJob]) -> None:
        now = time.monotonic()
        live: list[ExplainJob] = []
        for job in batch:
            if not job.future.set_running_or_notify_cancel():
                continue  # the client has gone
            if job.deadline < now:
                job.future.set_exception(DeadlineExceeded("the request waited past its deadline; it was not run"))
                continue
            live.append(job)
        if not live:
            return
        labels = {"model": self.model.name}
        try:
            results = run_batch(self.model, live, self.pass_chunk_size, self.evaluation_steps)
        except ServiceError as exc:
            for job in live:
                job.future.set_exception(exc)
            return
        except Exception:
            logger.exception("batch of %d failed on model %s", len(live), self.model.name)
            for job in live:
                job.future.set_exception(ServiceError("the explanation failed; the error was logged"))
            return
        self.metrics.batch_size.labels(**labels).observe(len(live))
        self.metrics.inference_seconds.labels(**labels).observe(results[0].inference_ms / 1000)
        for job, result in zip(live, results, strict=True):
            job.future.set_result(result)

    def _fail_queued(self, error: ServiceError) -> None:
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)
