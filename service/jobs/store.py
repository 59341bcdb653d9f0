"""Jobs: long work answered later, kept in memory by the replica that runs it.

    queued ─> running ─> succeeded | failed | cancelled        (running: the worker has reported progress)

A job is created by a route, run by an asyncio task of its own (`service.http.job_runs`), and read by
`GET /v1/jobs/{id}` and its event stream. Its state changes on the event loop's thread only: the worker thread
reports progress through `Job.progress_threadsafe`. A job is visible only to the API key that created it (an
unknown id and another key's id are the same 404).

A result is kept as the bytes of its JSON, serialised once (in the CPU pool, by the job's run); a status read
splices them in only when asked (`status_json(with_result=True)`).

Bounds, so that no key (tenant) can take the store from the others: at most `max_jobs` jobs and `max_bytes` of
results are kept, and at most `max_jobs_per_tenant` jobs and `max_bytes_per_tenant` bytes of one key. A job
weighs its result's bytes once it has one, and the estimate it was created with until then. When a new job
needs room, finished jobs are chosen to be forgotten: the key's own, oldest first, then other keys' that ended
at least `min_keep_s` ago, oldest first; when they do not make room, the new job is refused (503
`too_many_jobs`, Retry-After). The chosen jobs are forgotten only once the new job's work has been admitted
(`admit`): a request the worker refuses erases nothing. A finished job is forgotten `ttl_s` after it ended
(`forget_expired`, on a timer and at each create and read).

`Idempotency-Key`: a job created with a key (`create(..., idempotency=...)`) is found again by `replay` while it
is kept: the same key from the same owner with the same request returns it, with another request is refused.
"""

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from api_schemas import ErrorDetail
from api_schemas.jobs import JobKind, JobProgress, JobState, JobStatus
from service.core.errors import Cancelled, IdempotencyKeyReused, JobNotFound, ServiceError, ServiceUnavailable
from service.jobs.events import KEEP_ALIVE, KEEP_ALIVE_S, sse_event

FINISHED: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})
MIB = 1024 * 1024


@dataclass(frozen=True)
class Idempotency:
    """A job-creating request's `Idempotency-Key` and a digest of what it asks (its parameters and image)."""

    key: str
    fingerprint: str


class Job:
    def __init__(self, kind: JobKind, model: str, owner: str, total: int, reserved_bytes: int = 0) -> None:
        # 128 random bits in hex: unguessable, and never starting with "-", which a command line takes for an
        # option (`explain job ID`; a URL-safe token starts with one once in 64).
        self.id = secrets.token_hex(16)
        self.kind = kind
        self.model = model
        self.owner = owner
        self.status: JobState = "queued"
        self.done = 0
        self.total = total
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result_json: bytes | None = None
        """The result's JSON, once the job has succeeded."""
        self.reserved_bytes = reserved_bytes
        """The result's estimated size, which the job weighs in the store until it has ended."""
        self.idempotency: Idempotency | None = None
        self.delivered = False
        """Whether its end has been sent to a client: the result of a succeeded job, the status of another."""
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

    @property
    def stored_bytes(self) -> int:
        """What the job weighs in the store: its result, or its estimate until it has ended."""
        if self.result_json is not None:
            return len(self.result_json)
        return 0 if self.finished else self.reserved_bytes

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

    def succeed(self, result_json: bytes) -> None:
        """End the job with its result, already serialised as JSON."""
        if not self.finished:
            self.done = self.total
            self.result_json = result_json
            self._end("succeeded")

    def fail(self, error: ServiceError, request_id: str) -> None:
        if not self.finished:
            self.error = ErrorDetail(code=error.code, message=error.message, request_id=request_id)
            self._end("cancelled" if isinstance(error, Cancelled) else "failed")

    def cancel(self, request_id: str) -> None:
        """Stop the work at its next chunk; the job is cancelled at once."""
        self.stop_work()
        self.fail(Cancelled("the job was cancelled"), request_id)

    def status_json(self, with_result: bool) -> bytes:
        """The job's `JobStatus` as JSON to send; `result` is there when asked for and the job has one."""
        if self.finished and (with_result or self.status != "succeeded"):
            self.delivered = True
        status = self._status_model().model_dump_json(by_alias=True, exclude={"result"}).encode()
        if not with_result or self.result_json is None:
            return status
        return status[:-1] + b',"result":' + self.result_json + b"}"

    def _status_model(self) -> JobStatus:
        return JobStatus(
            id=self.id,
            kind=self.kind,
            model=self.model,
            status=self.status,
            progress=JobProgress(done=self.done, total=self.total),
            created_at=utc(self.created_at),
            started_at=utc(self.started_at),
            finished_at=utc(self.finished_at),
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
    def __init__(
        self,
        max_jobs: int,
        max_jobs_per_tenant: int,
        ttl_s: float,
        min_keep_s: float,
        max_bytes: int = 1024 * MIB,
        max_bytes_per_tenant: int = 256 * MIB,
    ) -> None:
        self.limits = JobLimits(max_jobs, max_jobs_per_tenant, max_bytes, max_bytes_per_tenant, min_keep_s)
        self.ttl_s = ttl_s
        self._jobs: dict[str, Job] = {}
        self._room_for: dict[str, list[str]] = {}
        """New job's id -> the finished jobs to forget once the new job's work is admitted."""
        self._by_idempotency: dict[tuple[str, str], Job] = {}
        """(owner, Idempotency-Key) -> the job it created, while the job is kept."""

    def replay(self, owner: str, idempotency: Idempotency) -> Job | None:
        """The job that `owner` created earlier with the same `Idempotency-Key`, if it is still kept.

        Raises:
            IdempotencyKeyReused: the key was used for another request (other parameters or image).
        """
        self.forget_expired()
        job = self._by_idempotency.get((owner, idempotency.key))
        if job is None:
            return None
        if job.idempotency != idempotency:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request (other parameters or image); a new request "
                "needs a new key"
            )
        return job

    def create(
        self,
        kind: JobKind,
        model: str,
        owner: str,
        total: int,
        reserved_bytes: int = 0,
        idempotency: Idempotency | None = None,
    ) -> Job:
        """A new queued job (on the event loop) whose result is expected to weigh about `reserved_bytes`; call
        `admit` once its work is accepted, `forget` if refused.

        Raises:
            ServiceUnavailable: `too_many_jobs`, when finished jobs that may be forgotten do not make room for it.
        """
        self.forget_expired()
        victims = make_room(list(self._jobs.values()), owner, reserved_bytes, self.limits)
        job = Job(kind, model, owner, total, reserved_bytes)
        job.idempotency = idempotency
        self._jobs[job.id] = job
        if idempotency is not None:
            self._by_idempotency[(owner, idempotency.key)] = job
        if victims:
            self._room_for[job.id] = [victim.id for victim in victims]
        return job

    def admit(self, job: Job) -> None:
        """The job's work was accepted: forget the finished jobs chosen to make room for it."""
        for victim_id in self._room_for.pop(job.id, []):
            victim = self._jobs.get(victim_id)
            if victim is not None and victim.finished:
                self._drop(victim)

    def get(self, job_id: str, owner: str) -> Job:
        """The job `job_id` of `owner`.

        Raises:
            JobNotFound: no such job, forgotten, or another key's.
        """
        self.forget_expired()
        job = self._jobs.get(job_id)
        if job is None or not secrets.compare_digest(job.owner, owner):
            raise JobNotFound(f"no job '{job_id}' here (jobs live on the replica that ran them, for {self.ttl_s:g} s)")
        return job

    async def health(self) -> str:
        return "memory"

    async def status_json(self, job_id: str, owner: str, with_result: bool) -> bytes:
        """`GET /v1/jobs/{id}`: the job's status as JSON (see `Job.status_json`).

        Raises:
            JobNotFound: no such job, forgotten, or another key's.
        """
        return self.get(job_id, owner).status_json(with_result)

    async def cancel(self, job_id: str, owner: str, request_id: str) -> bytes:
        """`DELETE /v1/jobs/{id}`: cancel the job (a finished one stays as it is); its status as JSON."""
        job = self.get(job_id, owner)
        job.cancel(request_id)
        return job.status_json(with_result=False)

    async def events(self, job_id: str, owner: str, last_event_id: str | None) -> AsyncIterator[bytes]:
        """The job's Server-Sent Events (service.jobs.events), from its current state until it ends.

        Raises:
            JobNotFound: no such job, forgotten, or another key's.
        """
        return _follow(self.get(job_id, owner))

    def forget(self, job: Job) -> None:
        """Drop a job whose work was refused before it started (the jobs chosen to make room stay)."""
        self._room_for.pop(job.id, None)
        if job.id in self._jobs:
            self._drop(job)

    def unfinished(self) -> int:
        """How many jobs are queued or running."""
        return sum(1 for job in self._jobs.values() if not job.finished)

    def undelivered(self, ended_after: float) -> int:
        """How many jobs that ended after `ended_after` (`time.time()`) have not had their end sent yet."""
        return sum(
            1
            for job in self._jobs.values()
            if job.finished and not job.delivered and (job.finished_at or 0) > ended_after
        )

    def stored_bytes(self) -> int:
        """The results kept, and the estimates of the jobs not ended."""
        return sum(job.stored_bytes for job in self._jobs.values())

    def fail_unfinished(self, error: ServiceError) -> None:
        """End every unfinished job with `error` and stop its work (the service is shutting down)."""
        for job in self._jobs.values():
            if not job.finished:
                job.stop_work()
                job.fail(error, "-")

    def forget_expired(self) -> None:
        """Forget the finished jobs that ended more than `ttl_s` ago."""
        now = time.time()
        for job in [j for j in self._jobs.values() if j.finished and (j.finished_at or now) + self.ttl_s < now]:
            self._drop(job)

    def _drop(self, job: Job) -> None:
        del self._jobs[job.id]
        if job.idempotency is not None and self._by_idempotency.get((job.owner, job.idempotency.key)) is job:
            del self._by_idempotency[(job.owner, job.idempotency.key)]


async def _follow(job: Job) -> AsyncIterator[bytes]:
    seen = -1
    while True:
        if job.version != seen:
            seen = job.version
            if job.finished:
                yield sse_event(job.status, str(seen), job.status_json(with_result=True))
                return
            yield sse_event("progress", str(seen), job.status_json(with_result=False))
        await job.wait_for_change(seen, KEEP_ALIVE_S)
        if job.version == seen:
            yield KEEP_ALIVE


class Kept(Protocol):
    """What the bounds read of a kept job (a `Job` here, a summary of one in Redis)."""

    owner: str
    finished_at: float | None

    @property
    def finished(self) -> bool: ...

    @property
    def stored_bytes(self) -> int: ...


K = TypeVar("K", bound=Kept)


@dataclass(frozen=True)
class JobLimits:
    max_jobs: int
    max_jobs_per_tenant: int
    max_bytes: int
    max_bytes_per_tenant: int
    min_keep_s: float


def make_room(kept: Sequence[K], owner: str, new_bytes: int, limits: JobLimits) -> list[K]:
    """The finished jobs of `kept` to forget so that a new job of `owner` weighing `new_bytes` fits every bound:
    the owner's own, oldest first, then other owners' that ended at least `min_keep_s` ago, oldest first.

    Raises:
        ServiceUnavailable: `too_many_jobs`, when those that may be forgotten are not enough.
    """
    mine = [job for job in kept if secrets.compare_digest(job.owner, owner)]
    mine_bytes = sum(job.stored_bytes for job in mine)
    mine_finished = _oldest([job for job in mine if job.finished])
    victims = _to_forget(
        mine_finished, len(mine), mine_bytes, new_bytes, limits.max_jobs_per_tenant, limits.max_bytes_per_tenant
    )
    if victims is None:
        raise ServiceUnavailable(
            f"this key has {len(mine)} jobs and {_mib(mine_bytes)} of results running, queued or recently "
            f"finished; its share is {limits.max_jobs_per_tenant} jobs and {_mib(limits.max_bytes_per_tenant)} "
            f"(this job needs about {_mib(new_bytes)}); retry later",
            code="too_many_jobs",
            retry_after_s=5,
        )
    kept_long_enough = time.time() - limits.min_keep_s
    others_settled = [
        job
        for job in kept
        if job.finished_at is not None and job.finished_at <= kept_long_enough and job.owner != owner
    ]
    total_bytes = sum(job.stored_bytes for job in kept)
    count = len(kept) - len(victims)
    weight = total_bytes - sum(job.stored_bytes for job in victims)
    candidates = mine_finished[len(victims) :] + _oldest(others_settled)
    more = _to_forget(candidates, count, weight, new_bytes, limits.max_jobs, limits.max_bytes)
    if more is None:
        raise ServiceUnavailable(
            f"{len(kept)} jobs and {_mib(total_bytes)} of results are running, queued or recently "
            f"finished (bounds {limits.max_jobs} jobs, {_mib(limits.max_bytes)}); retry later",
            code="too_many_jobs",
            retry_after_s=5,
        )
    return victims + more


def _to_forget(
    candidates: list[K], count: int, weight: int, new_bytes: int, max_jobs: int, max_bytes: int
) -> list[K] | None:
    """The fewest of `candidates`, in their order, to forget so that `count` jobs weighing `weight` bytes and a
    new one of `new_bytes` are within `max_jobs` and `max_bytes`; None when all of them are not enough."""
    chosen: list[K] = []
    for job in [*candidates, None]:
        if count + 1 <= max_jobs and weight + new_bytes <= max_bytes:
            return chosen
        if job is None:
            return None
        chosen.append(job)
        count, weight = count - 1, weight - job.stored_bytes
    return None


def _oldest(jobs: list[K]) -> list[K]:
    return sorted(jobs, key=lambda job: job.finished_at or 0)


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
