"""Jobs in Redis (`EXPLAIN_JOB_STORE_URL=redis://...`): shared by every replica, so that any replica answers for
any job, and a job whose replica dies is run by another (`service.jobs.redis_runner`).

Keys, under `explain:`:

    job:{id}             hash: kind, model, owner, status, done, total, created_at, started_at, finished_at,
                         error (JSON), result (JSON bytes), weight (what it counts toward the byte bounds), its
                         Idempotency-Key's fingerprint; and, until it ends, its order: what a replica needs to run it
                         (`order`: its parameters and request id as JSON; `file:image`, `file:reference`,
                         `file:mask`: the posted bytes)
    job:{id}:events      stream: one entry per change (`name`, `status`: the status JSON without the result), which
                         the event stream of any replica follows; its ids are the events' ids (Last-Event-ID)
    idem:{owner}:{key}   the job an Idempotency-Key made
    jobs                 sorted set of every kept job by creation time: the bounds are counted over it
    queue:{model}        stream of job ids to run, read by the consumer group `replicas`: an entry stays pending
                         (claimed by one replica's consumer, its lease renewed while it runs) until its job ends

A job's keys expire `ttl_s` after it ends. A state change is one Lua script: it applies only while the job has
not ended (a cancel on one replica and the end of the run on another: the first wins), and it appends the event
in the same step, so that followers see every change once and in order.

The bounds are those of the memory store (`service.jobs.store.make_room`), counted over the jobs kept in Redis
under a lock held while a job is created. Redis unreachable: job routes answer 503 `job_store_unavailable`
(Retry-After); the client reconnects by itself once Redis is back.
"""

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from api_schemas import ErrorDetail
from api_schemas.jobs import JobKind, JobProgress, JobState, JobStatus
from service.core.errors import Cancelled, IdempotencyKeyReused, JobNotFound, ServiceError, ServiceUnavailable
from service.jobs.events import KEEP_ALIVE, KEEP_ALIVE_S, sse_event
from service.jobs.store import FINISHED, Idempotency, JobLimits, make_room, utc

logger = logging.getLogger(__name__)

PREFIX = "explain:"
GROUP = "replicas"
ORDER_FIELDS = ("order", "file:image", "file:reference", "file:mask")
STATE_FIELDS = ("kind", "model", "owner", "status", "done", "total", "created_at", "started_at", "finished_at", "error")
EVENTS_KEPT = 1000
EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
LOCK_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 0.5

# KEYS: job hash, its events. ARGV: event name, status JSON, seconds to keep it once ended (0: not ending), then
# the hash's field/value pairs to set. Applies only while the job has not ended; 1 when applied.
TRANSITION = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', {EVENTS_KEPT}, '*', 'name', ARGV[1], 'status', ARGV[2])
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('HDEL', KEYS[1], {", ".join(repr(f) for f in ORDER_FIELDS)})
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
  local idem = redis.call('HGET', KEYS[1], 'idem')
  if idem then redis.call('EXPIRE', idem, keep) end
end
return 1
"""
# KEYS: the queue. ARGV: group, consumer, entry id. Renews the lease of an entry this consumer still holds (its
# idle time back to 0); 0 when another consumer has taken it over (or it is gone).
RENEW = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""


@dataclass(frozen=True)
class JobOrder:
    """What a replica needs to run a job: its kind and model, who asked, the request's parameters (JSON) and
    posted files (`image`, `reference`, `mask`)."""

    kind: JobKind
    model: str
    owner: str
    parameters: str
    request_id: str
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    """A queue entry a replica's consumer has claimed: the job to run, and whether it was taken over from a
    replica that stopped renewing its lease."""

    entry_id: str
    job_id: str
    taken_over: bool


@dataclass(frozen=True)
class KeptSummary:
    """A kept job as the bounds count it."""

    id: str
    owner: str
    finished_at: float | None
    stored_bytes: int

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class RedisJobStore:
    def __init__(self, url: str, limits: JobLimits, ttl_s: float, unfinished_ttl_s: float) -> None:
        self.limits = limits
        self.ttl_s = ttl_s
        self.unfinished_ttl_s = unfinished_ttl_s
        """A job not ended is forgotten this long after its creation anyway (its deadline and then some)."""
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._following = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=KEEP_ALIVE_S + 5)
        """For blocking reads (event streams, the queue), which wait longer than a command may."""
        self._transition = self.redis.register_script(TRANSITION)
        self._renew = self.redis.register_script(RENEW)

    async def close(self) -> None:
        await self.redis.aclose()
        await self._following.aclose()

    async def health(self) -> str:
        """`redis` when Redis answers a PING within half a second, `unavailable` otherwise (for `/readyz`, which
        probes call often and with short timeouts)."""
        try:
            await asyncio.wait_for(self.redis.ping(), HEALTH_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError):
            return "unavailable"
        return "redis"

    # What routes call (the memory store has the same `status_json`, `cancel`, `events`).

    async def submit(
        self, order: JobOrder, total: int, reserved_bytes: int, idempotency: Idempotency | None
    ) -> tuple[str, bytes, bool]:
        """Keep a new queued job for `order` and queue it for any replica: its id, its status JSON, and False; or
        the job an earlier request with the same `Idempotency-Key` made, its status JSON, and True.

        Raises:
            IdempotencyKeyReused: the key was used for another request.
            ServiceUnavailable: `too_many_jobs` (bounds, as the memory store's), `job_store_unavailable`.
        """
        with _store_errors():
            if idempotency is not None:
                earlier = await self._replay(order.owner, idempotency)
                if earlier is not None:
                    return earlier["id"], await self._status_json(earlier, with_result=False), True
            job_id = secrets.token_hex(16)
            now = time.time()
            queued = {"id": job_id, "kind": order.kind, "model": order.model, "owner": order.owner, "status": "queued"}
            queued |= {"done": "0", "total": str(total), "created_at": repr(now)}
            status = await self._status_json(queued, with_result=False)
            state = {
                **{name: value for name, value in queued.items() if name != "id"},
                "weight": str(reserved_bytes),
                "order": json.dumps({"parameters": order.parameters, "request": order.request_id}),
                **{f"file:{name}": data for name, data in order.files.items()},
            }
            async with self.redis.lock(PREFIX + "lock:create", timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_TIMEOUT_S):
                victims = make_room(await self._kept(), order.owner, reserved_bytes, self.limits)
                async with self.redis.pipeline(transaction=True) as pipe:
                    for victim in victims:
                        pipe.delete(_job_key(victim.id), _events_key(victim.id))
                        pipe.zrem(PREFIX + "jobs", victim.id)
                    if idempotency is not None:
                        idem_key = f"{PREFIX}idem:{order.owner}:{idempotency.key}"
                        state |= {"idem": idem_key, "fingerprint": idempotency.fingerprint}
                        pipe.set(idem_key, job_id, ex=int(self.unfinished_ttl_s))
                    pipe.hset(_job_key(job_id), mapping=state)
                    pipe.xadd(_events_key(job_id), {"name": "progress", "status": status})
                    for key in (_job_key(job_id), _events_key(job_id)):
                        pipe.expire(key, int(self.unfinished_ttl_s))
                    pipe.zadd(PREFIX + "jobs", {job_id: now})
                    pipe.xadd(_queue_key(order.model), {"job": job_id})
                    await pipe.execute()
            return job_id, status, False

    async def status_json(self, job_id: str, owner: str, with_result: bool) -> bytes:
        """`GET /v1/jobs/{id}`.

        Raises:
            JobNotFound: no such job, forgotten, or another key's.
            ServiceUnavailable: `job_store_unavailable`.
        """
        with _store_errors():
            return await self._status_json(await self._owned(job_id, owner), with_result)

    async def cancel(self, job_id: str, owner: str, request_id: str) -> bytes:
        """`DELETE /v1/jobs/{id}`: the job is cancelled at once; the replica running it, which follows the job's
        events, stops at its next chunk."""
        with _store_errors():
            state = await self._owned(job_id, owner)
            await self.end(job_id, state, Cancelled("the job was cancelled"), request_id)
            return await self._status_json(await self._state(job_id) or state, with_result=False)

    async def events(self, job_id: str, owner: str, last_event_id: str | None) -> AsyncIterator[bytes]:
        """The job's Server-Sent Events from any replica: its current state (or the events after
        `last_event_id`, an id this stream sent), then each change until it ends.

        Raises:
            JobNotFound, ServiceUnavailable: as `status_json`.
        """
        with _store_errors():
            state = await self._owned(job_id, owner)
            latest = await self.redis.xrevrange(_events_key(job_id), count=1)
        if last_event_id is not None and EVENT_ID.match(last_event_id):
            return self._follow(job_id, last_event_id, None)
        return self._follow(job_id, _text(latest[0][0]) if latest else "0-0", state)

    # What a replica's runner calls.

    async def ensure_queue(self, model: str) -> None:
        """Create the model's queue and its consumer group, unless they exist."""
        try:
            await self.redis.xgroup_create(_queue_key(model), GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def claim(self, model: str, consumer: str, lease_s: float, wait_s: float) -> Claimed | None:
        """One entry of the model's queue for `consumer`: first one whose lease expired (its replica stopped
        renewing it), else a new one, waiting up to `wait_s` for it."""
        queue = _queue_key(model)
        _, taken, _ = await self.redis.xautoclaim(queue, GROUP, consumer, int(lease_s * 1000), "0-0", count=1)
        taken_over = bool(taken)
        if not taken:
            read = await self._following.xreadgroup(GROUP, consumer, {queue: ">"}, count=1, block=int(wait_s * 1000))
            taken = read[0][1] if read else []
        for entry_id, entry in taken:
            if entry:  # None: an entry deleted while it was pending
                return Claimed(_text(entry_id), _text(entry[b"job"]), taken_over)
            await self.redis.xack(queue, GROUP, entry_id)
        return None

    async def renew(self, model: str, consumer: str, entry_id: str) -> bool:
        """Renew the lease of a claimed entry; False when another replica has taken it over."""
        return bool(await self._renew(keys=[_queue_key(model)], args=[GROUP, consumer, entry_id]))

    async def done(self, model: str, entry_id: str) -> None:
        """The entry's job has ended (or is gone): take it off the queue."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(_queue_key(model), GROUP, entry_id)
            pipe.xdel(_queue_key(model), entry_id)
            await pipe.execute()

    async def hand_back(self, model: str, job_id: str, entry_id: str) -> None:
        """Put a claimed job back on the queue for another replica (this one is stopping, or its worker is full),
        queued again from its start."""
        state = await self._state(job_id)
        if state is None or state["status"] in FINISHED:
            await self.done(model, entry_id)
            return
        await self._apply(job_id, state | {"status": "queued", "done": "0"}, "progress", keep_s=0)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(_queue_key(model), {"job": job_id})
            pipe.xack(_queue_key(model), GROUP, entry_id)
            pipe.xdel(_queue_key(model), entry_id)
            await pipe.execute()

    async def drop_consumer(self, model: str, consumer: str) -> None:
        """Forget a stopping replica's consumer, unless an entry is still pending for it (a job it could not hand
        back: deleting the consumer would delete the entry, which another replica takes over instead)."""
        queue = _queue_key(model)
        if not await self.redis.xpending_range(queue, GROUP, "-", "+", 1, consumername=consumer):
            await self.redis.xgroup_delconsumer(queue, GROUP, consumer)

    async def start(self, job_id: str, taken_over: bool) -> tuple[JobOrder, int] | None:
        """A claimed job's order and how many times it was taken over, the job marked as running; None when it
        has ended (cancelled while queued) or been forgotten."""
        state = await self._state(job_id)
        if state is None or state["status"] in FINISHED:
            return None
        fields = await self.redis.hmget(_job_key(job_id), *ORDER_FIELDS)
        if fields[0] is None:
            return None
        takeovers = await self.redis.hincrby(_job_key(job_id), "takeovers", 1) if taken_over else 0
        order = json.loads(fields[0])
        files = {
            name.removeprefix("file:"): data for name, data in zip(ORDER_FIELDS[1:], fields[1:], strict=True) if data
        }
        started = state | {"status": "running", "done": "0", "started_at": state.get("started_at") or repr(time.time())}
        await self._apply(job_id, started, "progress", keep_s=0)
        job_order = JobOrder(
            state["kind"], state["model"], state["owner"], order["parameters"], order["request"], files
        )
        return job_order, takeovers

    async def progress(self, job_id: str, done: int, total: int) -> None:
        state = await self._state(job_id)
        if state is not None and state["status"] not in FINISHED:
            await self._apply(
                job_id, state | {"status": "running", "done": str(done), "total": str(total)}, "progress", 0
            )

    async def succeed(self, job_id: str, result_json: bytes) -> None:
        state = await self._state(job_id)
        if state is not None:
            ended = state | {"status": "succeeded", "done": state["total"], "finished_at": repr(time.time())}
            await self._apply(job_id, ended, "succeeded", self.ttl_s, result=result_json, weight=len(result_json))

    async def end(self, job_id: str, state: dict[str, str] | None, error: ServiceError, request_id: str) -> None:
        """End a job with `error` (failed, or cancelled when `error` is `Cancelled`), unless it has ended."""
        state = state or await self._state(job_id)
        if state is None:
            return
        status = "cancelled" if isinstance(error, Cancelled) else "failed"
        detail = ErrorDetail(code=error.code, message=error.message, request_id=request_id).model_dump_json()
        ended = state | {"status": status, "finished_at": repr(time.time()), "error": detail}
        await self._apply(job_id, ended, status, self.ttl_s, weight=0)

    async def wait_for_end(self, job_id: str, after: str, wait_s: float) -> tuple[str, bool]:
        """Wait up to `wait_s` (at most `KEEP_ALIVE_S`) for the job's events after `after` (`$`: from now): the
        last event's id, and whether one was final."""
        block_ms = max(int(min(wait_s, KEEP_ALIVE_S) * 1000), 1)
        read = await self._following.xread({_events_key(job_id): after}, count=100, block=block_ms)
        if not read:
            return after, False
        entries = read[0][1]
        ended = any(_text(entry[b"name"]) in FINISHED for _, entry in entries)
        return _text(entries[-1][0]), ended

    async def status_of(self, job_id: str) -> JobState | None:
        status = await self.redis.hget(_job_key(job_id), "status")
        return None if status is None else _text(status)  # type: ignore[return-value]

    # Inside.

    async def _apply(self, job_id: str, state: dict[str, str], event: str, keep_s: float, **extra: bytes | int) -> bool:
        """Set the job to `state` (and `extra` fields) and append its event, unless it has ended."""
        status = await self._status_json(state, with_result=False)
        pairs: list[str | bytes | int] = []
        for name, value in [*((k, state[k]) for k in STATE_FIELDS if k in state), *extra.items()]:
            pairs += [name, value]
        applied = await self._transition(
            keys=[_job_key(job_id), _events_key(job_id)], args=[event, status, int(keep_s), *pairs]
        )
        return bool(applied)

    async def _follow(self, job_id: str, after: str, state: dict[str, str] | None) -> AsyncIterator[bytes]:
        try:
            if state is not None:
                if state["status"] in FINISHED:
                    yield await self._final_event(job_id, after, state["status"])
                    return
                yield sse_event("progress", after, await self._status_json(state, with_result=False))
            while True:
                read = await self._following.xread(
                    {_events_key(job_id): after}, count=100, block=int(KEEP_ALIVE_S * 1000)
                )
                if not read:
                    if not await self.redis.exists(_job_key(job_id)):
                        return
                    yield KEEP_ALIVE
                    continue
                for entry_id, entry in read[0][1]:
                    after, name = _text(entry_id), _text(entry[b"name"])
                    if name in FINISHED:
                        yield await self._final_event(job_id, after, name)
                        return
                    yield sse_event(name, after, entry[b"status"])
        except (RedisError, OSError) as error:  # the client reconnects with Last-Event-ID
            logger.warning("job %s: its event stream ended, the job store failed: %s", job_id, error)

    async def _final_event(self, job_id: str, event_id: str, name: str) -> bytes:
        state = await self._state(job_id)
        if state is None:
            return sse_event(name, event_id, b"{}")
        return sse_event(name, event_id, await self._status_json(state, with_result=True))

    async def _replay(self, owner: str, idempotency: Idempotency) -> dict[str, str] | None:
        """The state of the job an earlier request of `owner` made with this key, if it is still kept."""
        job_id = await self.redis.get(f"{PREFIX}idem:{owner}:{idempotency.key}")
        if job_id is None:
            return None
        state = await self._state(_text(job_id))
        fingerprint = await self.redis.hget(_job_key(_text(job_id)), "fingerprint")
        if state is None or fingerprint is None:
            return None
        if _text(fingerprint) != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request (other parameters or image); a new request "
                "needs a new key"
            )
        return state

    async def _kept(self) -> list[KeptSummary]:
        """Every kept job (those whose keys expired are taken off the set)."""
        ids = [_text(i) for i in await self.redis.zrange(PREFIX + "jobs", 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(_job_key(job_id), "owner", "finished_at", "weight")
            rows = await pipe.execute()
        kept, gone = [], []
        for job_id, (owner, finished_at, weight) in zip(ids, rows, strict=True):
            if owner is None:
                gone.append(job_id)
            else:
                ended = None if finished_at is None else float(finished_at)
                kept.append(KeptSummary(job_id, _text(owner), ended, int(weight or 0)))
        if gone:
            await self.redis.zrem(PREFIX + "jobs", *gone)
        return kept

    async def _state(self, job_id: str) -> dict[str, str] | None:
        values = await self.redis.hmget(_job_key(job_id), *STATE_FIELDS)
        if values[0] is None:
            return None
        return {"id": job_id} | {
            name: _text(value) for name, value in zip(STATE_FIELDS, values, strict=True) if value is not None
        }

    async def _owned(self, job_id: str, owner: str) -> dict[str, str]:
        state = await self._state(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if state is None or not secrets.compare_digest(state["owner"], owner):
            raise JobNotFound(f"no job '{job_id}' (finished jobs are kept for {self.ttl_s:g} s)")
        return state

    async def _status_json(self, state: dict[str, str], with_result: bool) -> bytes:
        """The job's `JobStatus` as JSON, as the memory store's `Job.status_json` writes it."""
        status = _status(state).model_dump_json(by_alias=True, exclude={"result"}).encode()
        if not with_result or state["status"] != "succeeded":
            return status
        result = await self.redis.hget(_job_key(state["id"]), "result")
        return status if result is None else status[:-1] + b',"result":' + result + b"}"


def _status(state: dict[str, str]) -> JobStatus:
    error = state.get("error")
    return JobStatus(
        id=state["id"],
        kind=state["kind"],  # type: ignore[arg-type]
        model=state["model"],
        status=state["status"],  # type: ignore[arg-type]
        progress=JobProgress(done=int(state["done"]), total=int(state["total"])),
        created_at=utc(float(state["created_at"])),
        started_at=utc(float(state["started_at"])) if "started_at" in state else None,
        finished_at=utc(float(state["finished_at"])) if "finished_at" in state else None,
        error=ErrorDetail.model_validate_json(error) if error else None,
    )


@contextmanager
def _store_errors() -> Iterator[None]:
    """Redis unreachable (or failing) as 503 `job_store_unavailable`."""
    try:
        yield
    except (RedisError, OSError) as error:
        logger.warning("the job store failed: %s", error)
        raise ServiceUnavailable(
            "the job store (Redis) cannot be reached; jobs are unavailable for now (explain without "
            "Prefer: respond-async still works)",
            code="job_store_unavailable",
            retry_after_s=5,
        ) from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _events_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:events"


def _queue_key(model: str) -> str:
    return f"{PREFIX}queue:{model}"
