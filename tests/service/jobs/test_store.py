"""The job store's bounds between keys: a key's new jobs make room from its own finished jobs first, never from
another key's recently finished one, and a refused request erases nothing."""

import time

import pytest

from service.core.errors import ServiceError, ServiceUnavailable
from service.jobs.store import Job, JobStore

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
