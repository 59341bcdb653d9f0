"""Jobs: long work answered later, kept in memory by the replica that runs it.

    queued ─> running ─> succeeded | failed | cancelled        (running: the worker has reported progress)

A job is created by a route, run by an asyncio task of its own (`service.http.job_runs`), and read by
`GET /v1/jobs/{id}` and its event stream. Its state changes on the event loop's thread only: the worker thread
reports progress through `Job.progress_threadsafe`. A job is visible only to the API key that created it (an
unknown id and another key's id are the same 404).

Bounds, so that no key (tenant) can take the store from the others: at most `max_jobs` jobs are kept, and at
most `max_jobs_per_tenant` of one key. When a new job needs room, one finished job is chosen to be forgotten:
the key's own oldest finished job, else the oldest finished job of another key that ended at least
`min_keep_s` ago; with none, the new job is refused (503 `too_many_jobs`, Retry-After). The chosen job is
forgotten only once the new job's work has been admitted (`admit`): a request the worker refuses erases
nothing. A finished job is forgotten `ttl_s` after it ended.
"""

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from api_schemas import ErrorDetail
from api_schemas.jobs import JobKind, JobProgress, JobState, JobStatus
from service.core.errors import Cancelled, JobNotFound, ServiceError, ServiceUnavailable

FINISHED: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})


class Job:
    def __init__(self, kind: JobKind, model: str, owner: str, total: int) -> None:
        self.id = secrets.token_urlsafe(12)
        self.kind = kind
        self.model = model
        self.owner = owner
        self.status: JobState = "queued"
        self.done = 0
        self.total = total
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: BaseModel | None = None
        self.error: ErrorDetail | None = None
        self.stop_work: Callable[[], None] = lambda: None
        """Set by the job's run: asks its work to stop at the next chunk."""
        self.version = 0
        """Counts changes; the event stream sends one event per version."""
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def progress_threadsafe(self, done: int, total: int) -> None:
        """Report progress from any thread (the worker's)."""
        self._loop.call_soon_threadsafe(self.progress, done, total)

    def progress(self, done: int, total: int) -> None:
        if self.finished:
            return
        if self.status == "queued":
            self.status, self.started_at = "running", time.time()
        self.done, self.total = done, total
        self._change()

    def succeed(self, result: BaseModel) -> None:
        if not self.finished:
            self.done = self.total
            self.result = result
            self._end("succeeded")

    def fail(self, error: ServiceError, request_id: str) -> None:
        if not self.finished:
            self.error = ErrorDetail(code=error.code, message=error.message, request_id=request_id)
            self._end("cancelled" if isinstance(error, Cancelled) else "failed")

    def cancel(self, request_id: str) -> None:
        """Stop the work at its next chunk; the job is cancelled at once."""
        self.stop_work()
        self.fail(Cancelled("the job was cancelled"), request_id)

    def status_model(self) -> JobStatus:
        return JobStatus(
            id=self.id,
            kind=self.kind,
            model=self.model,
            status=self.status,
            progress=JobProgress(done=self.done, total=self.total),
            created_at=_utc(self.created_at),
            started_at=_utc(self.started_at),
            finished_at=_utc(self.finished_at),
            result=self.result,
            error=self.error,
        )

    async def wait_for_change(self, seen_version: int, timeout_s: float) -> None:
        """Return once the job has changed since `seen_version`, or after `timeout_s`."""
        if self.version != seen_version:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass

    def _end(self, status: JobState) -> None:
        self.status, self.finished_at = status, time.time()
        if self.started_at is None:
            self.started_at = self.finished_at
        self._change()

    def _change(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()


class JobStore:
    def __init__(self, max_jobs: int, max_jobs_per_tenant: int, ttl_s: float, min_keep_s: float) -> None:
        self.max_jobs = max_jobs
        self.max_jobs_per_tenant = max_jobs_per_tenant
        self.ttl_s = ttl_s
        self.min_keep_s = min_keep_s
        self._jobs: dict[str, Job] = {}
        self._room_for: dict[str, str] = {}
        """New job's id -> the finished job to forget once the new job's work is admitted."""

    def create(self, kind: JobKind, model: str, owner: str, total: int) -> Job:
        """A new queued job (on the event loop); call `admit` once its work is accepted, `forget` if refused.

        Raises:
            ServiceUnavailable: `too_many_jobs`, when no finished job may make room for it.
        """
        self._forget_expired()
        mine = [job for job in self._jobs.values() if secrets.compare_digest(job.owner, owner)]
        victim: Job | None = None
        if len(mine) >= self.max_jobs_per_tenant:
            victim = _oldest_finished(mine)
            if victim is None:
                raise ServiceUnavailable(
                    f"this key has {len(mine)} jobs running or queued, its bound; retry later",
                    code="too_many_jobs",
                    retry_after_s=5,
                )
        elif len(self._jobs) >= self.max_jobs:
            kept_long_enough = time.time() - self.min_keep_s
            settled = [
                j for j in self._jobs.values() if j.finished_at is not None and j.finished_at <= kept_long_enough
            ]
            victim = _oldest_finished(mine) or _oldest_finished(settled)
            if victim is None:
                raise ServiceUnavailable(
                    f"{self.max_jobs} jobs are running, queued or recently finished; retry later",
                    code="too_many_jobs",
                    retry_after_s=5,
                )
        job = Job(kind, model, owner, total)
        self._jobs[job.id] = job
        if victim is not None:
            self._room_for[job.id] = victim.id
        return job

    def admit(self, job: Job) -> None:
        """The job's work was accepted: forget the finished job chosen to make room for it."""
        victim = self._room_for.pop(job.id, None)
        if victim is not None and victim in self._jobs and self._jobs[victim].finished:
            del self._jobs[victim]

    def get(self, job_id: str, owner: str) -> Job:
        """The job `job_id` of `owner`.

        Raises:
            JobNotFound: no such job, forgotten, or another key's.
        """
        self._forget_expired()
        job = self._jobs.get(job_id)
        if job is None or not secrets.compare_digest(job.owner, owner):
            raise JobNotFound(f"no job '{job_id}' here (jobs live on the replica that ran them, for {self.ttl_s:g} s)")
        return job

    def forget(self, job: Job) -> None:
        """Drop a job whose work was refused before it started (the job chosen to make room stays)."""
        self._jobs.pop(job.id, None)
        self._room_for.pop(job.id, None)

    def unfinished(self) -> int:
        """How many jobs are queued or running."""
        return sum(1 for job in self._jobs.values() if not job.finished)

    def fail_unfinished(self, error: ServiceError) -> None:
        """End every unfinished job with `error` and stop its work (the service is shutting down)."""
        for job in self._jobs.values():
            if not job.finished:
                job.stop_work()
                job.fail(error, "-")

    def _forget_expired(self) -> None:
        now = time.time()
        for job_id in [j.id for j in self._jobs.values() if j.finished and (j.finished_at or now) + self.ttl_s < now]:
            del self._jobs[job_id]


def _oldest_finished(jobs: list[Job]) -> Job | None:
    finished = [job for job in jobs if job.finished]
    return min(finished, key=lambda job: job.finished_at or 0) if finished else None


def _utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
