"""The Redis job store on a real `redis-server`: the memory store's bounds and Idempotency-Key replays, a job that
ends once (a cancel and the end of its run: the first wins), results sent only when asked, and keys that expire
`ttl_s` after a job ends."""

import json
import time

import pytest

from service.core.errors import Cancelled, IdempotencyKeyReused, JobNotFound, ServiceError, ServiceUnavailable
from service.jobs.redis_store import JobOrder, RedisJobStore
from service.jobs.store import Idempotency, JobLimits
from tests.redis_server import redis_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis():
    with redis_server() as server:
        yield server


@pytest.fixture
async def store(redis):
    redis.client().flushall()
    limits = JobLimits(
        max_jobs=4, max_jobs_per_tenant=2, max_bytes=1 << 30, max_bytes_per_tenant=1 << 28, min_keep_s=60
    )
    store = RedisJobStore(redis.url, limits, ttl_s=1, unfinished_ttl_s=60)
    yield store
    await store.close()


def order(owner: str, parameters: str = '{"method": ["grad_cam"]}') -> JobOrder:
    return JobOrder("explain", "tiny", owner, parameters, "request-1", {"image": b"\x89PNG..."})


async def submit(store: RedisJobStore, owner: str, idempotency: Idempotency | None = None) -> str:
    job_id, status, replayed = await store.submit(order(owner), total=4, reserved_bytes=1000, idempotency=idempotency)
    assert json.loads(status)["status"] == "queued" and not replayed
    return job_id


async def test_a_keys_share_is_bounded_and_its_own_finished_jobs_make_room(store):
    first, second = await submit(store, "a"), await submit(store, "a")
    with pytest.raises(ServiceUnavailable) as refused:
        await submit(store, "a")
    assert refused.value.code == "too_many_jobs"
    await submit(store, "b")  # another key has its own share
    await store.end(first, None, ServiceError("failed"), "-")
    third = await submit(store, "a")  # the key's own finished job is forgotten to make room
    with pytest.raises(JobNotFound):
        await store.status_json(first, "a", with_result=False)
    for kept in (second, third):
        assert json.loads(await store.status_json(kept, "a", with_result=False))["status"] == "queued"


async def test_a_job_is_found_only_by_its_key_and_ends_once(store):
    job_id = await submit(store, "a")
    with pytest.raises(JobNotFound):
        await store.status_json(job_id, "b", with_result=False)
    started = await store.start(job_id, taken_over=False)
    assert started is not None and started[0].files == {"image": b"\x89PNG..."} and started[1] == 0
    await store.progress(job_id, 2, 4)
    cancelled = json.loads(await store.cancel(job_id, "a", "request-2"))
    assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == Cancelled.code
    await store.succeed(job_id, b'{"late": true}')  # the run ended after the cancel: the cancel stands
    status = json.loads(await store.status_json(job_id, "a", with_result=True))
    assert status["status"] == "cancelled" and "result" not in status
    assert await store.start(job_id, taken_over=False) is None  # nothing left to run


async def test_results_are_sent_when_asked_and_forgotten_after_the_ttl(store, redis):
    job_id = await submit(store, "a")
    await store.start(job_id, taken_over=False)
    await store.succeed(job_id, b'{"answer": 42}')
    assert "result" not in json.loads(await store.status_json(job_id, "a", with_result=False))
    assert json.loads(await store.status_json(job_id, "a", with_result=True))["result"] == {"answer": 42}
    assert redis.client().hget(f"explain:job:{job_id}", "file:image") is None  # the order is let go at the end
    time.sleep(2.1)
    with pytest.raises(JobNotFound):
        await store.status_json(job_id, "a", with_result=False)
    assert not redis.client().exists(f"explain:job:{job_id}:events")


async def test_an_idempotency_key_returns_the_first_job_and_refuses_another_request(store):
    key = Idempotency("client-key-1", "digest-1")
    job_id = await submit(store, "a", key)
    again, _, replayed = await store.submit(order("a"), 4, 1000, key)
    assert again == job_id and replayed
    with pytest.raises(IdempotencyKeyReused):
        await store.submit(order("a"), 4, 1000, Idempotency("client-key-1", "digest-2"))
    other_owner, _, replayed = await store.submit(order("b"), 4, 1000, key)  # keys are per API key
    assert other_owner != job_id and not replayed


async def test_redis_unreachable_is_job_store_unavailable(redis):
    store = RedisJobStore("redis://127.0.0.1:1/0", JobLimits(4, 2, 1 << 30, 1 << 28, 60), 1, 60)
    with pytest.raises(ServiceUnavailable) as refused:
        await store.status_json("0" * 32, "a", with_result=False)
    assert refused.value.code == "job_store_unavailable"
    assert await store.health() == "unavailable"
    await store.close()
