"""The model's queue, served round robin by owner (API key): each `get` takes the oldest job of the next owner in
turn, so that a batch gathers one job of every waiting key before a second of any, and a key with many requests
waiting does not hold back another key's one. Within a key, first come, first served."""

import queue
from collections import OrderedDict, deque

from service.engine.work import ExplainJob


class FairQueue(queue.Queue[ExplainJob]):
    """A bounded `queue.Queue` (the same blocking, `maxsize` and `mutex`) whose order is round robin by
    `ExplainJob.owner`; it overrides only the storage hooks that `queue.Queue` provides for this."""

    def _init(self, maxsize: int) -> None:
        self.by_owner: OrderedDict[str, deque[ExplainJob]] = OrderedDict()
        self.size = 0

    def _qsize(self) -> int:
        return self.size

    def _put(self, job: ExplainJob) -> None:
        self.by_owner.setdefault(job.owner, deque()).append(job)
        self.size += 1

    def _get(self) -> ExplainJob:
        owner, jobs = next(iter(self.by_owner.items()))
        job = jobs.popleft()
        if jobs:
            self.by_owner.move_to_end(owner)  # its next job waits for every other owner's turn
        else:
            del self.by_owner[owner]
        self.size -= 1
        return job

    def waiting_of(self, owner: str) -> int:
        """How many of the queued jobs are `owner`'s."""
        with self.mutex:
            return len(self.by_owner.get(owner, ()))
