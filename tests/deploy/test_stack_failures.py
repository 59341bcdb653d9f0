"""A replica lost under load, through the local stack: SIGTERM (the drain) loses no request; `kill -9` fails at
most the requests that replica had in flight, and none after (the gateway retries on the other replica)."""

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.deploy.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow
EXPLAIN = "/v1/models/tiny/explain"
CLIENTS = 6
SLOW = {"TINY_FORWARD_S": "0.05", "EXPLAIN_MAX_BATCH_SIZE": "2"}  # each replica holds requests in flight


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    result: int | str  # status, or the name of the transport error
    instance: str | None


class Load:
    """`CLIENTS` threads posting explain requests through the gateway in a closed loop until stopped."""

    def __init__(self, stack: RunningStack, image: bytes) -> None:
        self.stack, self.image = stack, image
        self.outcomes: list[Outcome] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]

    def client(self) -> None:
        with httpx.Client(base_url=self.stack.url, timeout=30) as client:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(
                        EXPLAIN, params={"method": "cam"}, content=self.image, headers={"content-type": "image/png"}
                    )
                    result, instance = answer.status_code, answer.headers.get("x-instance")
                except httpx.TransportError as exc:
                    result, instance = type(exc).__name__, None
                self.outcomes.append(Outcome(started, time.monotonic(), result, instance))

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def served_by(self, name: str, after: float = 0.0) -> int:
        return sum(o.instance == name for o in self.outcomes if o.started >= after)


def queued(stack: RunningStack) -> float:
    """Requests waiting in the replicas' queues, from each one's /metrics."""
    total = 0.0
    for replica in stack.replicas.values():
        text = httpx.get(f"http://127.0.0.1:{replica['port']}/metrics", timeout=5).text
        total += sum(
            float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith("explain_queue_depth{")
        )
    return total


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s} s"
        time.sleep(0.05)


def test_sigterm_to_one_replica_under_load_loses_no_request(noise_png):
    with running_stack(env=SLOW) as stack, Load(stack, noise_png) as load:
        wait_for(lambda: load.served_by("replica-1") >= 10 and load.served_by("replica-2") >= 10, 60, "both serving")
        signalled = time.monotonic()
        stack.signal_replica("replica-1", signal.SIGTERM)
        wait_for(lambda: stack.replica_exited("replica-1"), 30, "replica-1 drained and exited")
        exited = time.monotonic()
        wait_for(lambda: load.served_by("replica-2", after=exited) >= 20, 60, "replica-2 serving alone")
        wait_for(lambda: "replica-1 exited with" in stack.log(), 5, "the stack reporting the exit")
        assert "replica-1 exited with 0" in stack.log()  # a clean drain
    results = Counter(o.result for o in load.outcomes)
    drained = sum(o.instance == "replica-1" and o.started < signalled < o.ended for o in load.outcomes)
    print(f"\nSIGTERM under load: {results}; {drained} in flight on the draining replica answered by it")
    assert results == {200: len(load.outcomes)}, results


def test_kill_9_of_one_replica_fails_at_most_its_in_flight_requests_and_none_after(noise_png):
    with running_stack(env=SLOW) as stack, Load(stack, noise_png) as load:
        wait_for(lambda: load.served_by("replica-1") >= 10 and load.served_by("replica-2") >= 10, 60, "both serving")
        killed = time.monotonic()
        stack.signal_replica("replica-1", signal.SIGKILL)
        wait_for(lambda: load.served_by("replica-2", after=killed + 0.5) >= 30, 60, "replica-2 serving alone")
    failed = [o for o in load.outcomes if o.result != 200]
    in_flight = [o for o in load.outcomes if o.started < killed < o.ended]
    after = [o for o in load.outcomes if o.started > killed]
    print(
        f"\nkill -9 under load: {len(failed)} failed of {len(in_flight)} in flight at the kill; "
        f"{len(after)} sent after it, {Counter(o.result for o in after)}"
    )
    assert all(o.started < killed < o.ended for o in failed), failed  # only requests in flight at the kill
    assert len(failed) <= CLIENTS
    assert after and all(o.result == 200 for o in after)
    assert all(o.instance == "replica-2" for o in after)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_stopping_the_stack_drains_the_replicas_and_ends_everything_it_started(noise_png, signum):
    with running_stack(env={"TINY_FORWARD_S": "2", "EXPLAIN_MAX_BATCH_SIZE": "1"}) as stack:
        pids = [r["pid"] for r in stack.replicas.values()] + [stack.nginx_pid]
        with ThreadPoolExecutor(4) as pool:
            in_flight = [
                pool.submit(
                    httpx.post,
                    stack.url + EXPLAIN,
                    params={"method": "cam"},
                    content=noise_png,
                    headers={"content-type": "image/png"},
                    timeout=30,
                )
                for _ in range(4)
            ]
            wait_for(lambda: queued(stack) == 2, 30, "each replica running one request and holding one queued")
            stack.process.send_signal(signum)
            assert [f.result().status_code for f in in_flight] == [200] * 4
        assert stack.process.wait(timeout=60) == 0, stack.log()[-3000:]
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
