"""Shutdown state of one app: whether it is draining, and how many admitted requests are still in flight.

On SIGTERM the server (`service.core.server`) calls `begin_drain`: from then on readiness answers 503 and new
requests are refused with 503 `shutting_down`, while the requests already admitted, and the jobs already
accepted, run to the end (jobs stay readable meanwhile, and a job that ends during the drain keeps it open until
its end has been read). The server closes its listener once nothing is `busy` or the grace period is over.
"""

import math
import time
from collections.abc import Callable

from service.core.errors import ServiceUnavailable

SHUTDOWN_RETRY_AFTER_S = 2


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.drain_started: float | None = None
        self.deadline: float | None = None
        self._at_grace_over: list[Callable[[], None]] = []
        self._also_waited_for: list[Callable[[], int]] = []

    def begin_drain(self, grace_s: float) -> None:
        """Refuse new work from now on; admitted work has until `grace_s` from now (`time.monotonic`).

        Only sets attributes, so that a signal handler may call it.
        """
        if not self.draining:
            self.drain_started = time.monotonic()
            self.deadline = self.drain_started + grace_s
            self.draining = True

    def drain_started_at(self) -> float:
        """When the drain began, as `time.time()`; infinity when not draining."""
        if self.drain_started is None:
            return math.inf
        return time.time() - (time.monotonic() - self.drain_started)

    def remaining_s(self) -> float | None:
        """Seconds left of the grace period, None when not draining."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.0)

    def also_wait_for(self, count: Callable[[], int]) -> None:
        """Register admitted work beside the requests in flight that the drain waits for (e.g. unfinished jobs)."""
        self._also_waited_for.append(count)

    def busy(self) -> int:
        """Requests in flight plus the other admitted work not yet done: the drain ends when it is zero."""
        return self.in_flight + sum(count() for count in self._also_waited_for)

    def at_grace_over(self, callback: Callable[[], None]) -> None:
        """Register what gives up on admitted work (e.g. fail the queued jobs) when the grace runs out."""
        self._at_grace_over.append(callback)

    def grace_over(self) -> None:
        """The grace period ran out with work in flight: give up on it, so that it is answered, not cut."""
        for callback in self._at_grace_over:
            callback()

    def admit(self) -> None:
        """Count a request in, or refuse it while draining.

        Raises:
            ServiceUnavailable: `shutting_down`, with Retry-After and `Connection: close`.
        """
        if self.draining:
            raise ServiceUnavailable(
                "the service is shutting down; retry on another replica",
                code="shutting_down",
                retry_after_s=SHUTDOWN_RETRY_AFTER_S,
                close_connection=True,
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
