"""Long work on a model's worker, a chunk at a time, taking turns with the ordinary batches.

The worker thread alternates: one batch of ordinary requests (if any is queued), then one chunk of long work
(if any is running), so that a cheap request never waits for more than one chunk plus one batch. Long tasks take
their chunks round robin between their owners (API keys), then between an owner's tasks, so that a key with many
long tasks gets no more turns than a key with one:

    ExplainTask          one explain request whose extra passes span several chunks (Score-CAM at a wide layer,
                         SmoothGrad with many samples, ...): its `batch_steps`, one chunk per turn
    VisualizationBatch   every running feature visualization of the model, one optimisation step each, batched
                         together: one chunk per turn (service/engine/visualizations.py)
    DeviceCall           one short call on the model (feature maps, filters): one turn

Tasks are added from any thread (`LongWork.add`) and run on the worker thread only.
"""

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from model_store import LoadedModel
from service.core.errors import Cancelled, DeadlineExceeded, ServiceError, ServiceUnavailable
from service.engine.device import OUT_OF_MEMORY, UNRECOVERABLE
from service.engine.explainer import batch_steps
from service.engine.work import ExplainJob, JobResult
from service.methods.passes import PassRunner

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LongTask(ABC):
    """Work that runs one chunk per turn on the worker thread."""

    owner: str | None = None
    """Whose work it is (the digest of an API key; '' when keys are off), or None for work shared by several."""

    @abstractmethod
    def step(self) -> bool:
        """Run one chunk; True when the task is over (finished, failed or cancelled).

        Raises:
            Only unrecoverable device errors (`torch.AcceleratorError`), which end the worker.
        """

    @abstractmethod
    def abandon(self, error: ServiceError) -> None:
        """End the task without running it further, with `error` (the worker is stopping)."""


class LongWork:
    """The long tasks of one worker, round robin. `add` may be called from any thread; the rest runs on the
    worker thread."""

    def __init__(self) -> None:
        self._arrivals: queue.SimpleQueue[LongTask] = queue.SimpleQueue()
        self._owners: deque[str | None] = deque()
        """Whose turn comes next: each owner with tasks once."""
        self._tasks: dict[str | None, deque[LongTask]] = {}
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        """Whether some task waits for its next chunk."""
        return self._pending > 0

    def add(self, task: LongTask) -> None:
        with self._lock:
            self._pending += 1
        self._arrivals.put(task)

    def run_one_chunk(self) -> None:
        """Run one chunk of the task whose turn it is (nothing when there is none)."""
        self._take_arrivals()
        if not self._owners:
            return
        owner = self._owners.popleft()
        tasks = self._tasks[owner]
        task = tasks.popleft()
        try:
            over = task.step()
        except BaseException:
            self._finished()
            self._end_turn(owner)
            raise
        if over:
            self._finished()
        else:
            tasks.append(task)
        self._end_turn(owner)

    def abandon_all(self, error: ServiceError) -> None:
        """End every task with `error` (the worker is stopping or has died)."""
        self._take_arrivals()
        for tasks in self._tasks.values():
            while tasks:
                tasks.popleft().abandon(error)
                self._finished()
        self._tasks.clear()
        self._owners.clear()

    def _take_arrivals(self) -> None:
        while True:
            try:
                task = self._arrivals.get_nowait()
            except queue.Empty:
                return
            if not self._tasks.get(task.owner):
                self._tasks[task.owner] = deque()
                self._owners.append(task.owner)
            self._tasks[task.owner].append(task)

    def _end_turn(self, owner: str | None) -> None:
        if self._tasks[owner]:
            self._owners.append(owner)
        else:
            del self._tasks[owner]

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1


class ExplainTask(LongTask):
    """One explain request's passes, a chunk per turn; reports progress in images forwarded.

    Between chunks it checks the request: cancelled (`job.cancel_requested`, e.g. the client left or a job was
    deleted) or past its deadline, the remaining chunks are not run.
    """

    def __init__(self, model: LoadedModel, job: ExplainJob, chunk_size: int, evaluation_steps: int) -> None:
        self.model = model
        self.job = job
        self.owner = job.owner
        self.chunk_size = chunk_size
        self.evaluation_steps = evaluation_steps
        self.runner = PassRunner(model.module, chunk_size, model.layer_grids)
        self.steps = None

    def step(self) -> bool:
        job = self.job
        if self.steps is None:
            if not job.future.set_running_or_notify_cancel():
                return True  # cancelled while waiting for its first turn
            self.steps = batch_steps(self.model, [job], self.chunk_size, self.evaluation_steps, runner=self.runner)
            self._report_progress(final=False)
        if job.cancel_requested.is_set():
            return self._end(Cancelled("the request was cancelled; its remaining passes were not run"))
        if time.monotonic() > job.deadline:
            return self._end(
                DeadlineExceeded(
                    "the request ran past its deadline; its remaining passes were not run (send long work as a job "
                    "with the header Prefer: respond-async)"
                )
            )
        try:
            next(self.steps)
        except StopIteration as done:
            (outcome,) = done.value
            self._report_progress(final=True)
            return self._end(outcome)
        except UNRECOVERABLE:
            raise
        except ServiceError as exc:
            return self._end(exc)
        except OUT_OF_MEMORY:
            logger.warning("long request ran out of device memory on model %s", self.model.name)
            error = ServiceUnavailable("the device ran out of memory for this request", code="device_out_of_memory")
            return self._end(error)
        except Exception:
            logger.exception("long request failed on model %s", self.model.name)
            return self._end(ServiceError("the explanation failed; the error was logged"))
        self._report_progress(final=False)
        return False

    def abandon(self, error: ServiceError) -> None:
        if self.steps is None and not self.job.future.set_running_or_notify_cancel():
            return
        self._end(error)

    def _report_progress(self, final: bool) -> None:
        if self.job.on_progress is not None:
            total = max(self.job.extra_passes, self.runner.images_forwarded)
            self.job.on_progress(total if final else self.runner.images_forwarded, total)

    def _end(self, outcome: JobResult | ServiceError) -> bool:
        if self.steps is not None:
            self.steps.close()
        if isinstance(outcome, ServiceError):
            self.job.future.set_exception(outcome)
        else:
            self.job.future.set_result(outcome)
        return True


class DeviceCall(LongTask, Generic[T]):
    """`fn(model)` once, at its turn on the worker thread; its result or domain error resolves `future`."""

    def __init__(self, model: LoadedModel, fn: Callable[[LoadedModel], T], owner: str = "") -> None:
        self.model = model
        self.fn = fn
        self.owner = owner
        self.future: Future[T] = Future()

    def step(self) -> bool:
        if not self.future.set_running_or_notify_cancel():
            return True
        try:
            self.future.set_result(self.fn(self.model))
        except UNRECOVERABLE:
            raise
        except ServiceError as exc:
            self.future.set_exception(exc)
        except OUT_OF_MEMORY:
            self.future.set_exception(ServiceUnavailable("the device ran out of memory", code="device_out_of_memory"))
        except Exception:
            logger.exception("a call on model %s failed", self.model.name)
            self.future.set_exception(ServiceError("the computation failed; the error was logged"))
        return True

    def abandon(self, error: ServiceError) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(error)
