"""Jobs in Redis through the local stack (`deploy/stack.py --jobs redis`: nginx, two replicas, redis-server): the
gateway sends job reads to any replica without the 404 retry, and a client following a job's events through the
gateway (reconnecting with Last-Event-ID, as EventSource does) sees every event once and in order, and the
result, across the death of the replica that ran the job."""

import json
import os
import signal
import threading
import time

import httpx
import pytest
import redis

from explain_client.sse import parse_events
from tests.deploy.stack_process import RunningStack, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
EXPLAIN = "/v1/models/tiny/explain"
LONG = {"method": "occlusion", "window": 4, "stride": 4}  # 64 chunks of 50 ms
REPLICA_ENV = {"TINY_FORWARD_S": "0.05", "EXPLAIN_PASS_CHUNK_SIZE": "1", "EXPLAIN_JOB_LEASE_S": "2"}
FINAL = ("succeeded", "failed", "cancelled")


class Follower:
    """Follows a job's events through the gateway in a thread, reconnecting with Last-Event-ID after a broken
    stream, until the final event."""

    def __init__(self, stack: RunningStack, location: str) -> None:
        self.url = stack.url + location + "/events"
        self.events: list[tuple[str, str, dict]] = []
        self.reconnections = 0
        self.thread = threading.Thread(target=self.follow)

    def follow(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.events[-1][1]} if self.events else {}
            try:
                with httpx.stream("GET", self.url, headers=headers, timeout=30) as stream:
                    for event in parse_events(stream.iter_lines()):
                        self.events.append((event.event, event.id, json.loads(event.data)))
                        if event.event in FINAL:
                            return
            except httpx.TransportError:
                pass
            self.reconnections += 1
            time.sleep(0.1)


def test_a_client_follows_a_job_through_the_gateway_across_its_replicas_death(noise_png):
    with running_stack(env=REPLICA_ENV, jobs="redis") as stack:
        quick = httpx.post(
            stack.url + EXPLAIN,
            params={"method": "cam"},
            content=noise_png,
            headers={"content-type": "image/png", "prefer": "respond-async"},
        )
        assert quick.status_code == 202
        reads = [httpx.get(stack.url + quick.headers["location"]) for _ in range(8)]
        assert [read.status_code for read in reads] == [200] * 8
        assert len({read.headers["x-instance"] for read in reads}) == 2  # both replicas answer for the job
        unknown = httpx.get(stack.url + "/v1/jobs/" + "0" * 32)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
        log = stack.access_log.read_text()
        assert "upstream_status=404 " in log and "upstream_status=404," not in log  # not asked again elsewhere

        submitted = httpx.post(
            stack.url + EXPLAIN,
            params=LONG,
            content=noise_png,
            headers={"content-type": "image/png", "prefer": "respond-async"},
        )
        assert submitted.status_code == 202, submitted.text
        location = submitted.headers["location"]
        follower = Follower(stack, location)
        follower.thread.start()
        queue = redis.Redis.from_url(stack.redis_url)
        deadline = time.monotonic() + 10
        while not (pending := queue.xpending_range("explain:queue:tiny", "replicas", "-", "+", 1)):
            assert time.monotonic() < deadline, "no replica claimed the job"
            time.sleep(0.02)
        runner = pending[0]["consumer"].decode().split(":")[0]
        while len(follower.events) < 5:
            assert time.monotonic() < deadline, "no progress was followed"
            time.sleep(0.02)
        os.kill(stack.replicas[runner]["pid"], signal.SIGKILL)
        follower.thread.join(timeout=120)
        assert not follower.thread.is_alive()
        names = [name for name, _, _ in follower.events]
        ids = [tuple(map(int, event_id.split("-"))) for _, event_id, _ in follower.events]
        assert names[-1] == "succeeded" and names.count("succeeded") == 1 and set(names[:-1]) == {"progress"}
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # each event once, in order
        done = [data["progress"]["done"] for _, _, data in follower.events[:-1]]
        assert done[-1] > 1  # progress went on on the replica that took the job over
        assert follower.events[-1][2]["progress"] == {"done": 64, "total": 64}
        direct = httpx.post(stack.url + EXPLAIN, params=LONG, content=noise_png, headers={"content-type": "image/png"})
        assert direct.status_code == 200
        result = follower.events[-1][2]["result"]
        assert [e["map"] for e in result["explanations"]] == [e["map"] for e in direct.json()["explanations"]]
