"""Jobs in Redis, with real processes: two replicas (`python -m tests.serve_tiny`) and Debian's `redis-server`.

Any replica answers for any job; a job whose replica is killed, stopped or restarted goes on on another one and
ends once, with the result it has when computed alone; Redis down answers 503 for jobs only, and the replicas
reconnect by themselves once it is back.
"""

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import numpy as np
import pytest
from PIL import Image

from explain_client.sse import parse_events
from tests.real_server import RealServer, real_server
from tests.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.timeout(300)
KEYS = ("tenant-a-key-0123456789", "tenant-b-key-0123456789")
URL = "/v1/models/tiny/explain"
ASYNC = {"Prefer": "respond-async"}
# 64 occlusion patches, one per chunk (pass_chunk_size=1), each pass 50 ms: about 3.2 s of work
LONG = {"method": "occlusion", "window": 4, "stride": 4}
QUICK = {"method": "grad_cam"}
LEASE_S = 2.0
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def image() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def replica_settings(redis: RedisServer, name: str) -> dict[str, str]:
    return {
        "job_store_url": redis.url,
        "job_lease_s": str(LEASE_S),
        "instance_id": name,
        "api_keys": ",".join(KEYS),
        "pass_chunk_size": "1",
        "shutdown_grace_s": "20",
    }


@contextmanager
def replicas(redis: RedisServer, *names: str, forward_s: float = 0.05) -> Iterator[dict[str, RealServer]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(real_server(replica_settings(redis, name), forward_s=forward_s)) for name in names
        }


def headers(key: str = KEYS[0], **more: str) -> dict[str, str]:
    return {"X-API-Key": key, **more}


def submit(server: RealServer, image: bytes, params: dict, key: str = KEYS[0]) -> str:
    answer = httpx.post(
        server.url + URL, params=params, content=image, headers=headers(key, **ASYNC, **{"Content-Type": "image/png"})
    )
    assert answer.status_code == 202, answer.text
    return answer.headers["location"]


def status(server: RealServer, location: str, result: bool = False) -> dict:
    answer = httpx.get(server.url + location, params={"result": str(result).lower()}, headers=headers(), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_end(server: RealServer, location: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := status(server, location))["status"] not in FINAL:
        assert time.monotonic() < deadline, f"the job did not end in {timeout_s} s: {state}"
        time.sleep(0.05)
    return status(server, location, result=True)


def runner_of(redis: RedisServer, timeout_s: float = 10) -> str:
    """The instance whose runner holds the queue's one pending entry (consumer names start with it)."""
    client = redis.client()
    deadline = time.monotonic() + timeout_s
    while True:
        pending = client.xpending_range("explain:queue:tiny", "replicas", "-", "+", 10)
        if pending:
            return pending[0]["consumer"].decode().split(":")[0]
        assert time.monotonic() < deadline, "no replica claimed the job"
        time.sleep(0.02)


def wait_until_running(server: RealServer, location: str) -> None:
    deadline = time.monotonic() + 10
    while (state := status(server, location))["progress"]["done"] < 2:
        assert time.monotonic() < deadline, f"the job did not start: {state}"
        time.sleep(0.02)


def long_tasks(server: RealServer) -> float:
    text = httpx.get(server.url + "/metrics", headers=headers()).text
    return float(
        next(line for line in text.splitlines() if line.startswith('explain_long_tasks{model="tiny"}')).split()[-1]
    )


def maps(answer: dict) -> list:
    return [(e["method"], e["class"]["index"], e["map"]) for e in answer["explanations"]]


def direct(server: RealServer, image: bytes, params: dict) -> dict:
    answer = httpx.post(
        server.url + URL, params=params, content=image, headers=headers(**{"Content-Type": "image/png"}), timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def events(server: RealServer, location: str, last_event_id: str | None = None) -> list[tuple[str, str, dict]]:
    """The job's events (name, id, data) until its last one."""
    extra = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    found = []
    with httpx.stream("GET", server.url + location + "/events", headers=headers(**extra), timeout=60) as stream:
        assert stream.status_code == 200
        for event in parse_events(stream.iter_lines()):
            found.append((event.event, event.id, json.loads(event.data)))
            if event.event in FINAL:
                break
    return found


def test_any_replica_answers_for_any_job_and_only_to_its_key(redis, image):
    with replicas(redis, "a", "b") as servers:
        a, b = servers["a"], servers["b"]
        assert httpx.get(a.url + "/readyz").json()["job_store"] == "redis"
        location = submit(a, image, QUICK)
        done = wait_for_end(b, location)
        assert done["status"] == "succeeded" and maps(done["result"]) == maps(direct(a, image, QUICK))
        streamed = events(a, location)
        assert streamed[-1][0] == "succeeded" and maps(streamed[-1][2]["result"]) == maps(done["result"])
        other = httpx.get(b.url + location, headers=headers(KEYS[1]))
        assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
        assert httpx.delete(a.url + location, headers=headers(KEYS[1])).status_code == 404
        again = httpx.delete(b.url + location, headers=headers())  # a finished job stays as it is
        assert again.status_code == 200 and again.json()["status"] == "succeeded"
        replayed = [
            httpx.post(
                server.url + URL,
                params=QUICK,
                content=image,
                headers=headers(**ASYNC, **{"Content-Type": "image/png", "Idempotency-Key": "same-request-1"}),
            )
            for server in (a, b)
        ]
        assert replayed[0].headers["location"] == replayed[1].headers["location"]
        assert replayed[1].headers["idempotent-replayed"] == "true"


def test_a_job_whose_replica_is_killed_is_run_by_another_with_the_same_result(redis, image):
    with replicas(redis, "a", "b") as servers:
        location = submit(servers["a"], image, LONG)
        victim = runner_of(redis)
        survivor = servers["b" if victim == "a" else "a"]
        wait_until_running(survivor, location)
        os.kill(servers[victim].process.pid, signal.SIGKILL)
        done = wait_for_end(survivor, location)
        assert done["status"] == "succeeded", done
        assert maps(done["result"]) == maps(direct(survivor, image, LONG))


def test_sigterm_hands_the_running_job_to_another_replica_and_events_follow_it(redis, image):
    with replicas(redis, "a", "b") as servers:
        location = submit(servers["a"], image, LONG)
        victim = runner_of(redis)
        survivor = servers["b" if victim == "a" else "a"]
        wait_until_running(survivor, location)
        started = time.monotonic()
        assert servers[victim].terminate(timeout_s=15) == 0
        assert time.monotonic() - started < 5  # it handed the job back instead of finishing its 3 s of work
        streamed = events(survivor, location, last_event_id="0-0")
        names = [name for name, _, _ in streamed]
        assert names[-1] == "succeeded" and names.count("succeeded") == 1
        ids = [tuple(map(int, event_id.split("-"))) for _, event_id, _ in streamed]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        states = [data["status"] for _, _, data in streamed]
        handed_back = states.index("queued", 1)  # queued, running..., queued again (handed back), running...
        assert "running" in states[:handed_back] and "running" in states[handed_back:]
        assert maps(streamed[-1][2]["result"]) == maps(direct(survivor, image, LONG))


def test_a_cancel_on_one_replica_stops_the_work_on_the_other(redis, image):
    with replicas(redis, "a", "b") as servers:
        location = submit(servers["a"], image, LONG)
        runner = servers[runner_of(redis)]
        other = servers["b" if runner is servers["a"] else "a"]
        wait_until_running(other, location)
        cancelled = httpx.delete(other.url + location, headers=headers())
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 1.0  # the runner follows the job's events: a chunk (50 ms) and some slack
        while long_tasks(runner) != 0:
            assert time.monotonic() < deadline, "the work went on after the cancel"
            time.sleep(0.05)
        assert status(runner, location)["status"] == "cancelled"
        assert redis.client().xlen("explain:queue:tiny") == 0


def test_redis_down_refuses_jobs_only_and_the_replicas_reconnect(redis, image):
    with replicas(redis, "a", forward_s=0.0) as servers:
        a = servers["a"]
        before = submit(a, image, QUICK)
        assert wait_for_end(a, before)["status"] == "succeeded"
        redis.stop()
        try:
            refused = httpx.post(
                a.url + URL, params=QUICK, content=image, headers=headers(**ASYNC, **{"Content-Type": "image/png"})
            )
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "job_store_unavailable"
            assert int(refused.headers["retry-after"]) > 0
            read = httpx.get(a.url + before, headers=headers())
            assert read.status_code == 503 and read.json()["error"]["code"] == "job_store_unavailable"
            assert direct(a, image, QUICK)["explanations"]
            ready = httpx.get(a.url + "/readyz")
            assert ready.status_code == 200 and ready.json()["job_store"] == "unavailable"
        finally:
            redis.start()
        assert status(a, before, result=True)["status"] == "succeeded"  # kept through the restart (AOF)
        after = submit(a, image, QUICK)
        assert wait_for_end(a, after)["status"] == "succeeded"
        assert httpx.get(a.url + "/readyz").json()["job_store"] == "redis"


def test_jobs_survive_a_redis_restart_while_they_run(redis, image):
    with replicas(redis, "a", "b", forward_s=0.02) as servers:
        locations = [submit(servers["a"], image, LONG) for _ in range(4)]
        wait_until_running(servers["a"], locations[0])
        redis.stop()
        time.sleep(1)
        redis.start()
        ended = [wait_for_end(servers["b"], location, timeout_s=120) for location in locations]
        assert [state["status"] for state in ended] == ["succeeded"] * 4


def test_a_rolling_restart_while_20_jobs_run_ends_each_once(redis, image):
    settings = {name: replica_settings(redis, name) for name in ("a", "b", "c", "d")}
    params = {"method": "occlusion", "window": 8, "stride": 8}  # 16 passes of 20 ms
    with ExitStack() as stack:
        a = stack.enter_context(real_server(settings["a"], forward_s=0.02))
        b = stack.enter_context(real_server(settings["b"], forward_s=0.02))
        locations = [submit(a if n % 2 else b, image, params) for n in range(20)]
        time.sleep(0.5)
        assert a.terminate(timeout_s=20) == 0
        c = stack.enter_context(real_server(settings["c"], forward_s=0.02))
        assert b.terminate(timeout_s=20) == 0
        d = stack.enter_context(real_server(settings["d"], forward_s=0.02))
        ended = [wait_for_end(c, location, timeout_s=120) for location in locations]
        assert [state["status"] for state in ended] == ["succeeded"] * 20
        expected = maps(direct(d, image, params))
        assert all(maps(state["result"]) == expected for state in ended)
        for location in locations:
            names = [name for name, _, _ in events(d, location, last_event_id="0-0")]
            assert names.count("succeeded") == 1
