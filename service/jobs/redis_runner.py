"""A replica's share of the jobs in Redis: one runner per model claims jobs from the model's queue, runs them on
the replica's worker (`perform`, from the HTTP layer: the same preparation as a request), and ends them.

    claim (a lease expired elsewhere first, else a new entry) -> run, the lease renewed every third of
    `lease_s` -> succeeded | failed, entry acknowledged

- A replica that dies stops renewing: after `lease_s` another replica's runner takes the entry over and runs
  the job from its start (an explanation is a pure function of its request, so the result is the same). After
  `MAX_TAKEOVERS` take-overs the job fails instead (work that kills its replica is not passed on forever).
- Cancel (`DELETE` on any replica) ends the job in Redis; the runner follows the job's events while it runs,
  reads the cancel at once and stops the work at its next chunk.
- Draining (SIGTERM): the runner claims nothing more, stops its running work at the next chunk and hands the
  jobs back to the queue, where another replica takes them.
- The worker full or stopping (`WORKER_FULL`): the job is handed back after a pause, for this replica or another.
- Redis unreachable: the runner waits and tries again; a job it could not end stays pending and is taken over
  once its lease expires, so that no acknowledged job is lost.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from service.core.errors import Cancelled, ServiceError
from service.jobs.redis_store import Claimed, JobOrder, RedisJobStore
from service.jobs.store import FINISHED

logger = logging.getLogger(__name__)

MAX_TAKEOVERS = 3
WORKER_FULL = frozenset({"queue_full", "too_many_jobs", "worker_stopped", "shutting_down"})
"""What the worker answers when it cannot take the work now (a 503 for a request): the job is handed back. Any
other error (`device_out_of_memory` for work that does not fit even alone, say) ends the job."""
CLAIM_WAIT_S = 1.0
RETRY_S = 1.0

Perform = Callable[[JobOrder, Callable[[int, int], None], Callable[[Callable[[], None]], None]], Awaitable[bytes]]
"""Runs an order on this replica: `perform(order, on_progress, set_stop)` returns the result's JSON; the work
reports progress from any thread through `on_progress(done, total)` and registers what stops it with
`set_stop`."""


class RunningJob:
    def __init__(self, claimed: Claimed) -> None:
        self.claimed = claimed
        self.stop_work: Callable[[], None] = lambda: None
        self.handing_back = False
        self.cancelled = False
        self.taken_over = False
        """Another replica took the entry over (this one could not renew its lease in time)."""
        self.progress: tuple[int, int] | None = None
        self.progress_changed = asyncio.Event()

    def stop(self) -> None:
        self.stop_work()

    def set_stop(self, stop: Callable[[], None]) -> None:
        self.stop_work = stop


class RedisJobRunner:
    def __init__(
        self,
        store: RedisJobStore,
        model: str,
        consumer: str,
        slots: int,
        lease_s: float,
        perform: Perform,
        draining: Callable[[], bool],
    ) -> None:
        self.store = store
        self.model = model
        self.consumer = consumer
        self.slots = slots
        self.lease_s = lease_s
        self.perform = perform
        self.draining = draining
        self.running: dict[str, RunningJob] = {}
        self._tasks: set[asyncio.Task] = set()

    def unfinished(self) -> int:
        """Jobs this replica is running or handing back (the drain waits for them)."""
        return len(self._tasks)

    async def run(self) -> None:
        """Claim and run jobs until the replica drains (or this is cancelled)."""
        ready = False
        while not self.draining():
            if len(self._tasks) >= self.slots:  # jobs running, and those still starting
                await asyncio.sleep(0.05)
                continue
            try:
                if not ready:
                    await self.store.ensure_queue(self.model)
                    ready = True
                claimed = await self.store.claim(self.model, self.consumer, self.lease_s, CLAIM_WAIT_S)
            except (RedisError, OSError) as error:
                logger.warning("jobs of %s: the job store failed (%s); retrying in %g s", self.model, error, RETRY_S)
                ready = False  # Redis may have restarted without the group
                await asyncio.sleep(RETRY_S)
                continue
            if claimed is not None:
                self._spawn(self._run_one(claimed))
        for job in self.running.values():
            job.handing_back = True
            job.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.store.drop_consumer(self.model, self.consumer)
        except (RedisError, OSError):
            pass

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, claimed: Claimed) -> None:
        job_id, entry_id = claimed.job_id, claimed.entry_id
        try:
            started = await self.store.start(job_id, claimed.taken_over)
        except (RedisError, OSError) as error:
            logger.warning("job %s: could not start it (%s); it is taken over after its lease", job_id, error)
            return
        if started is None:
            await self._quietly(self.store.done(self.model, entry_id))
            return
        order, takeovers = started
        if takeovers > MAX_TAKEOVERS:
            error = ServiceError(f"the job's replica stopped {takeovers} times while running it; it was given up")
            await self._quietly(self.store.end(job_id, None, error, order.request_id))
            await self._quietly(self.store.done(self.model, entry_id))
            return
        job = self.running[job_id] = RunningJob(claimed)
        lease = asyncio.ensure_future(self._keep_lease(job))
        reporter = asyncio.ensure_future(self._report_progress(job))
        loop = asyncio.get_running_loop()

        def on_progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(_note_progress, job, done, total)

        try:
            result = await self.perform(order, on_progress, job.set_stop)
            reporter.cancel()
            if not job.taken_over:
                await self._end(job, self.store.succeed(job_id, result))
        except ServiceError as error:
            reporter.cancel()
            if job.handing_back or (error.code in WORKER_FULL and not job.cancelled):
                if not job.handing_back:
                    await asyncio.sleep(RETRY_S)  # the worker was full: let it (or another replica) make room
                await self._quietly(self.store.hand_back(self.model, job_id, entry_id))
            elif not job.taken_over:
                if not isinstance(error, Cancelled) or not job.cancelled:
                    await self._quietly(self.store.end(job_id, None, error, order.request_id))
                await self._quietly(self.store.done(self.model, entry_id))
        except Exception:
            reporter.cancel()
            logger.exception("job %s failed", job_id)
            if not job.taken_over:
                failure = ServiceError("the job failed; the error was logged")
                await self._end(job, self.store.end(job_id, None, failure, order.request_id))
        finally:
            lease.cancel()
            del self.running[job_id]

    async def _end(self, job: RunningJob, ending: Awaitable[None]) -> None:
        """End the job in Redis and take its entry off the queue; when Redis fails here, the entry stays pending
        and is taken over once its lease expires."""
        try:
            await ending
            await self.store.done(self.model, job.claimed.entry_id)
        except (RedisError, OSError) as error:
            logger.warning("job %s: could not end it (%s); it is taken over after its lease", job.claimed.job_id, error)

    async def _keep_lease(self, job: RunningJob) -> None:
        """Renew the lease every third of it, and follow the job's events meanwhile: stop the work as soon as the
        job is cancelled (its final event, written by whichever replica took the DELETE) or taken over."""
        job_id, after = job.claimed.job_id, "$"
        renew_at = time.monotonic() + self.lease_s / 3
        while True:
            try:
                after, ended = await self.store.wait_for_end(job_id, after, max(renew_at - time.monotonic(), 0.01))
                if ended or await self.store.status_of(job_id) in (None, *FINISHED):
                    job.cancelled = True
                if not job.cancelled and time.monotonic() >= renew_at:
                    job.taken_over = not await self.store.renew(self.model, self.consumer, job.claimed.entry_id)
                    renew_at = time.monotonic() + self.lease_s / 3
            except (RedisError, OSError) as error:
                logger.warning("job %s: could not renew its lease (%s)", job_id, error)
                await asyncio.sleep(min(self.lease_s / 3, RETRY_S))
                renew_at = time.monotonic()
                continue
            if job.taken_over or job.cancelled:
                job.stop()
                return

    async def _report_progress(self, job: RunningJob) -> None:
        """Write the latest progress to Redis, one write at a time (in order; reports that come faster than
        Redis answers are folded into the latest)."""
        while True:
            await job.progress_changed.wait()
            job.progress_changed.clear()
            if job.progress is not None:
                try:
                    await self.store.progress(job.claimed.job_id, *job.progress)
                except (RedisError, OSError) as error:
                    logger.warning("job %s: could not write its progress (%s)", job.claimed.job_id, error)

    async def _quietly(self, call: Awaitable[None]) -> None:
        try:
            await call
        except (RedisError, OSError) as error:
            logger.warning("jobs of %s: the job store failed (%s)", self.model, error)


def _note_progress(job: RunningJob, done: int, total: int) -> None:
    job.progress = (done, total)
    job.progress_changed.set()
