"""Every running visualization of a model as one long task: one optimisation step each per turn, batched.

Orders arrive from any thread (`VisualizationBatch.add`); the worker thread makes each order's `Visualization`
(torch work) at its first turn, steps all of them together (`step_together`), reports progress, and resolves an
order's future with its final image and description once its steps are done. The task leaves the worker's turns
when nothing is running and comes back with the next order.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from model_store import LoadedModel
from service.core.errors import Cancelled, DeadlineExceeded, ServiceError, ServiceUnavailable
from service.engine.device import OUT_OF_MEMORY, UNRECOVERABLE
from service.engine.scheduler import LongTask
from service.visualization.engine import Description, Visualization, VisualizationSpec, describe, step_together

logger = logging.getLogger(__name__)
OOM_CODE = "device_out_of_memory"


@dataclass(frozen=True)
class VisualizationOutcome:
    """The final image (3, h, w) in [0, 1] on the CPU, and what the model makes of it."""

    image: np.ndarray
    description: Description


@dataclass(frozen=True)
class VisualizationOrder:
    """One visualization for the worker.

    Attributes:
        spec: what to visualize (checked against the model before it is ordered).
        on_progress: called on the worker thread with (steps done, steps) after each step.
        cancel_requested: set to stop it at the next step.
        future: resolved with a `VisualizationOutcome` or a `ServiceError`.
        owner: who asked (the digest of the API key; '' when keys are off), for the worker's share of long work.
        deadline: `time.monotonic()` past which it stops with 504 `timeout` (none by default).
    """

    spec: VisualizationSpec
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False)
    cancel_requested: threading.Event = field(default_factory=threading.Event, compare=False)
    future: Future = field(default_factory=Future, compare=False)
    owner: str = ""
    deadline: float = math.inf


class VisualizationBatch(LongTask):
    def __init__(self, model: LoadedModel, schedule: Callable[[LongTask], None]) -> None:
        """`schedule(self)` puts the task back in the worker's turns when an order arrives while it is out."""
        self.model = model
        self._schedule = schedule
        self._lock = threading.Lock()
        self._arrivals: list[VisualizationOrder] = []
        self._running: list[tuple[VisualizationOrder, Visualization]] = []
        self._scheduled = False

    def add(self, order: VisualizationOrder) -> None:
        """Take an order (any thread)."""
        with self._lock:
            self._arrivals.append(order)
            if self._scheduled:
                return
            self._scheduled = True
        self._schedule(self)

    def step(self) -> bool:
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
        for order in arrivals:
            self._start(order)
        self._running = [(order, vis) for order, vis in self._running if not self._stopped(order)]
        if self._running:
            try:
                step_together(self.model, [vis for _, vis in self._running])
                self._report()
            except UNRECOVERABLE:
                raise
            except OUT_OF_MEMORY:
                self._fail_running(ServiceUnavailable("the device ran out of memory", code=OOM_CODE))
            except Exception:
                logger.exception("a visualization step failed on model %s", self.model.name)
                self._fail_running(ServiceError("the visualization failed; the error was logged"))
        with self._lock:
            if self._running or self._arrivals:
                return False
            self._scheduled = False
            return True

    def abandon(self, error: ServiceError) -> None:
        with self._lock:
            arrivals, self._arrivals, self._scheduled = self._arrivals, [], False
        for order in arrivals:
            if order.future.set_running_or_notify_cancel():
                order.future.set_exception(error)
        self._fail_running(error)

    def _start(self, order: VisualizationOrder) -> None:
        if not order.future.set_running_or_notify_cancel():
            return
        try:
            self._running.append((order, Visualization(order.spec, self.model)))
        except UNRECOVERABLE:
            raise
        except OUT_OF_MEMORY:  # its image and optimiser did not fit: this order fails, the running ones go on
            error = ServiceUnavailable("the device ran out of memory starting the visualization", code=OOM_CODE)
            order.future.set_exception(error)
        except ServiceError as exc:
            order.future.set_exception(exc)

    def _stopped(self, order: VisualizationOrder) -> bool:
        if order.cancel_requested.is_set():
            order.future.set_exception(Cancelled("the visualization was cancelled"))
            return True
        if time.monotonic() > order.deadline:
            order.future.set_exception(DeadlineExceeded("the visualization did not end before its deadline"))
            return True
        return False

    def _report(self) -> None:
        still_running = []
        for order, vis in self._running:
            if order.on_progress is not None:
                order.on_progress(vis.steps_done, vis.spec.steps)
            if vis.done:
                order.future.set_result(VisualizationOutcome(vis.image().numpy(), describe(self.model, vis)))
            else:
                still_running.append((order, vis))
        self._running = still_running

    def _fail_running(self, error: ServiceError) -> None:
        for order, _ in self._running:
            order.future.set_exception(error)
        self._running = []
