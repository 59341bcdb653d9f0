"""The job store's bounds between keys, in jobs and in bytes: a key's new jobs make room from its own finished
jobs first, never from another key's recently finished one, and a refused request erases nothing; results kept
as bytes and sent only when asked; expired jobs swept; Idempotency-Key replays."""

import json
import time

import pytest

from service.core.errors import IdempotencyKeyReused, ServiceError, ServiceUnavailable
from service.jobs.store import Idempotency, Job, JobStore

pytestmark = pytest.mark.anyio


def finished(store: JobStore, owner: str, ended_s_ago: float = 0.0) -> Job:
    job = store.create("explain", "m", owner, total=1)
    store.admit(job)
    job.fail(ServiceError("done"), "-")
    job.finished_at = time.time() - ended_s_ago
    return job


def running(store: JobStore, owner: str) -> Job:
    job = store.create("explain", "m", owner, total=1)
    store.admit(job)
    return job


def kept(store: JobStore, job: Job) -> bool:
    try:
        return store.get(job.id, job.owner) is job
    except ServiceError:
        return False


async def test_a_refused_request_erases_no_other_job():
    store = JobStore(max_jobs=2, max_jobs_per_tenant=2, ttl_s=600, min_keep_s=60)
    theirs = finished(store, "b", ended_s_ago=120)
    running(store, "a")
    refused = store.create("explain", "m", "a", total=1)  # room would come from b's job...
    store.forget(refused)  # ...but the worker refused the work
    assert kept(store, theirs)
    admitted = store.create("explain", "m", "a", total=1)
    store.admit(admitted)
    assert not kept(store, theirs) and kept(store, admitted)


async def test_room_comes_from_the_keys_own_finished_jobs_first():
    store = JobStore(max_jobs=3, max_jobs_per_tenant=3, ttl_s=600, min_keep_s=60)
    theirs = finished(store, "b", ended_s_ago=500)  # older, but another key's
    mine = finished(store, "a", ended_s_ago=1)
    running(store, "a")
    store.admit(store.create("explain", "m", "a", total=1))
    assert kept(store, theirs) and not kept(store, mine)


async def test_another_keys_recently_finished_job_is_kept_and_the_new_job_refused():
    store = JobStore(max_jobs=2, max_jobs_per_tenant=2, ttl_s=600, min_keep_s=60)
    theirs = finished(store, "b", ended_s_ago=5)
    running(store, "a")
    with pytest.raises(ServiceUnavailable) as refused:
        store.create("explain", "m", "a", total=1)
    assert refused.value.code == "too_many_jobs" and refused.value.headers["Retry-After"] == "5"
    assert kept(store, theirs)


async def test_a_key_at_its_bound_leaves_the_others_their_share():
    store = JobStore(max_jobs=10, max_jobs_per_tenant=3, ttl_s=600, min_keep_s=60)
    for _ in range(3):
        running(store, "a")
    with pytest.raises(ServiceUnavailable, match="this key has 3 jobs"):
        store.create("explain", "m", "a", total=1)
    assert kept(store, running(store, "b"))


async def test_at_its_bound_a_key_makes_room_from_its_own_finished_job_whatever_its_age():
    store = JobStore(max_jobs=10, max_jobs_per_tenant=2, ttl_s=600, min_keep_s=60)
    mine = finished(store, "a", ended_s_ago=0)
    running(store, "a")
    new = store.create("explain", "m", "a", total=1)
    store.admit(new)
    assert not kept(store, mine) and kept(store, new)


def succeeded(store: JobStore, owner: str, size: int, ended_s_ago: float = 0.0) -> Job:
    job = store.create("explain", "m", owner, total=1, reserved_bytes=size)
    store.admit(job)
    job.succeed(b'{"x":"' + b"a" * (size - 8) + b'"}')
    job.finished_at = time.time() - ended_s_ago
    return job


MIB = 1024 * 1024


async def test_a_key_at_its_share_of_bytes_is_refused_while_another_key_is_admitted():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60, max_bytes=10 * MIB, max_bytes_per_tenant=4 * MIB)
    running_a = store.create("explain", "m", "a", total=1, reserved_bytes=3 * MIB)
    store.admit(running_a)
    with pytest.raises(ServiceUnavailable, match="its share is 10 jobs and 4.0 MiB") as refused:
        store.create("explain", "m", "a", total=1, reserved_bytes=2 * MIB)
    assert refused.value.code == "too_many_jobs"
    assert store.stored_bytes() == 3 * MIB  # the estimate of the job not ended
    assert kept(store, running(store, "b"))


async def test_room_in_bytes_comes_from_as_many_finished_jobs_as_it_takes_oldest_first():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60, max_bytes=6 * MIB, max_bytes_per_tenant=6 * MIB)
    oldest, older, newest = (succeeded(store, "a", 2 * MIB, ended_s_ago=age) for age in (30, 20, 10))
    new = store.create("explain", "m", "a", total=1, reserved_bytes=3 * MIB)
    assert kept(store, oldest) and kept(store, older)  # forgotten only once the new job's work is admitted
    store.admit(new)
    assert not kept(store, oldest) and not kept(store, older) and kept(store, newest)
    assert store.stored_bytes() == 5 * MIB


async def test_another_keys_results_make_room_in_bytes_only_once_kept_their_minimum():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60, max_bytes=4 * MIB, max_bytes_per_tenant=4 * MIB)
    fresh = succeeded(store, "b", 3 * MIB, ended_s_ago=5)
    with pytest.raises(ServiceUnavailable, match="bounds 10 jobs, 4.0 MiB"):
        store.create("explain", "m", "a", total=1, reserved_bytes=2 * MIB)
    fresh.finished_at = time.time() - 61
    store.admit(store.create("explain", "m", "a", total=1, reserved_bytes=2 * MIB))
    assert not kept(store, fresh)


async def test_the_status_leaves_the_result_out_unless_asked():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60)
    job = succeeded(store, "a", 64)
    without, with_result = json.loads(job.status_json(False)), json.loads(job.status_json(True))
    assert "result" not in without and without["status"] == "succeeded"
    assert with_result["result"] == {"x": "a" * 56} and with_result["id"] == job.id


async def test_expired_jobs_are_forgotten_when_swept():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60)
    old, recent = succeeded(store, "a", 1024, ended_s_ago=601), succeeded(store, "a", 1024, ended_s_ago=599)
    store.forget_expired()
    assert store.stored_bytes() == 1024 and kept(store, recent) and not kept(store, old)


async def test_an_idempotency_key_finds_its_job_again_for_the_same_request_of_the_same_key_only():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60)
    first = Idempotency("key-1", "digest-1")
    job = store.create("explain", "m", "a", total=1, idempotency=first)
    store.admit(job)
    assert store.replay("a", first) is job
    assert store.replay("b", first) is None  # another key's: a new job of its own
    with pytest.raises(IdempotencyKeyReused):
        store.replay("a", Idempotency("key-1", "digest-2"))
    job.fail(ServiceError("done"), "-")
    job.finished_at = time.time() - 601
    assert store.replay("a", first) is None  # forgotten with its job


async def test_a_refused_jobs_idempotency_key_is_free_again():
    store = JobStore(10, 10, ttl_s=600, min_keep_s=60)
    key = Idempotency("key-1", "digest-1")
    store.forget(store.create("explain", "m", "a", total=1, idempotency=key))
    assert store.replay("a", key) is None


async def test_job_ids_are_128_random_bits_in_hex_so_no_command_line_takes_one_for_an_option():
    ids = {Job("explain", "tiny", "", total=1).id for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
