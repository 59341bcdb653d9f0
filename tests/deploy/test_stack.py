"""Through the local stack (`make stack`: nginx with deploy/gateway/ in front of two replicas of the tiny model):
spreading, the gateway's own answers in the service's error body, request ids, jobs found on their replica,
and rate limiting."""

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.deploy.stack_process import RunningStack, running_stack

pytestmark = pytest.mark.slow
EXPLAIN = "/v1/models/tiny/explain"
RATE_PER_S, BURST = 2, 30  # room for the other tests' requests; a burst of 100 goes well over it
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def stack():
    with running_stack(rate_per_s=RATE_PER_S, burst=BURST, env={"EXPLAIN_MAX_BODY_BYTES": str(MAX_BODY)}) as running:
        yield running


def logged(stack: RunningStack, text: str, timeout_s: float = 5.0) -> None:
    """Wait for `text` in the gateway's access log (nginx writes a line once the answer is sent)."""
    deadline = time.monotonic() + timeout_s
    while text not in stack.access_log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in the gateway's access log"
        time.sleep(0.05)


def error_of(answer: httpx.Response) -> dict[str, str]:
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["request_id"] == answer.headers["x-request-id"]
    return body["error"]


def test_requests_are_spread_over_both_replicas(stack: RunningStack, noise_png):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        served = Counter(client.get("/readyz").headers["x-instance"] for _ in range(10))
        explained = Counter()
        for _ in range(6):
            answer = client.post(
                EXPLAIN, params={"method": "cam"}, content=noise_png, headers={"content-type": "image/png"}
            )
            assert answer.status_code == 200
            explained[answer.headers["x-instance"]] += 1
    assert set(served) == {"replica-1", "replica-2"}, served
    assert set(explained) == {"replica-1", "replica-2"}, explained  # least_conn: ties go round robin


def test_an_oversized_body_is_refused_at_the_gateway_in_the_error_body(stack: RunningStack):
    too_large = b"\0" * (MAX_BODY + 1)
    answer = httpx.post(stack.url + EXPLAIN, content=too_large, headers={"content-type": "image/png"}, timeout=10)
    assert answer.status_code == 413
    assert "x-instance" not in answer.headers  # no replica saw it
    error = error_of(answer)
    assert error["code"] == "payload_too_large" and str(MAX_BODY) in error["message"]
    fits = httpx.post(stack.url + EXPLAIN, content=b"\0" * MAX_BODY, headers={"content-type": "image/png"}, timeout=10)
    assert fits.status_code == 415 and "x-instance" in fits.headers  # the same limit: the replica judges it


def test_request_ids_are_passed_through_or_created(stack: RunningStack):
    mine = httpx.get(stack.url + "/v1/models/nope", headers={"x-request-id": "trace-42"}, timeout=10)
    assert mine.status_code == 404 and error_of(mine) == {
        "code": "model_not_found",
        "message": mine.json()["error"]["message"],
        "request_id": "trace-42",
    }
    for unsafe in ('x"}, "evil": {"', "a" * 65):
        created = httpx.get(stack.url + "/metrics", headers={"x-request-id": unsafe}, timeout=10)
        assert created.status_code == 404  # the gateway keeps metrics off the public side
        error = error_of(created)
        assert error["code"] == "not_found" and len(error["request_id"]) == 32 and error["request_id"] != unsafe
    fresh = httpx.get(stack.url + "/v1/models", timeout=10)
    assert fresh.status_code == 200 and len(fresh.headers["x-request-id"]) == 32
    logged(stack, f"id={fresh.headers['x-request-id']} ")  # one id in the gateway's log and the replica's


def test_a_job_is_found_whichever_replica_the_gateway_picks(stack: RunningStack, noise_png):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        created = client.post(
            EXPLAIN,
            params={"method": "cam"},
            content=noise_png,
            headers={"content-type": "image/png", "prefer": "respond-async"},
        )
        assert created.status_code == 202
        owner, location = created.headers["x-instance"], created.headers["location"]
        answers = [client.get(location) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        assert {a.headers["x-instance"] for a in answers} == {owner}
        unknown = client.get("/v1/jobs/no-such-job")
        assert unknown.status_code == 404 and error_of(unknown)["code"] == "job_not_found"
    logged(stack, "upstream_status=404, 200")  # some GET asked the other replica first


async def burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.get("/v1/models") for _ in range(count)))


def test_a_burst_over_the_rate_gets_429_in_the_error_body_with_retry_after(stack: RunningStack):
    began = time.monotonic()
    answers = asyncio.run(burst(stack.url, 100))
    elapsed_s = time.monotonic() - began
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] <= BURST + 2 + RATE_PER_S * elapsed_s, (statuses, elapsed_s)  # burst + what refilled
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["retry-after"] == "1"
        error = error_of(refused)
        assert error["code"] == "rate_limited" and f"{RATE_PER_S} requests per second" in error["message"]
