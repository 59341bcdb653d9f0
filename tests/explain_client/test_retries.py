"""Retries, API keys, timeouts and connection errors, against real server processes."""

import socket
import threading

import httpx
import pytest

from explain_client import (
    AuthenticationError,
    ConnectionError,
    ExplainClient,
    RetryPolicy,
    ServiceUnavailableError,
    TimeoutError,
)
from tests.explain_client.conftest import API_KEY, photo
from tests.real_server import real_server

pytestmark = pytest.mark.slow


def refusals(server) -> float:
    return sum(v for name, v in server.metrics().items() if 'status="503"' in name)


def run_concurrently(count: int, work) -> list:
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 (collected and asserted on)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_an_overloaded_service_is_retried_after_retry_after():
    settings = {"max_queue": 1, "max_batch_size": 1, "max_batch_delay_ms": 0}
    with real_server(settings, forward_s=0.3) as server:
        patient = ExplainClient(server.url, retry=RetryPolicy(max_retries=30), timeout=30)
        answers = run_concurrently(6, lambda i: patient.predict("tiny", photo(seed=i)))
        assert all(not isinstance(a, Exception) for a in answers), answers
        assert refusals(server) > 0  # some attempts were refused with 503 and retried

        hasty = ExplainClient(server.url, retry=RetryPolicy(max_retries=0), timeout=30)
        outcomes = run_concurrently(6, lambda i: hasty.predict("tiny", photo(seed=i)))
        refused = [o for o in outcomes if isinstance(o, ServiceUnavailableError)]
        assert refused, outcomes
        assert {(e.status, e.code, e.retry_after) for e in refused} == {(503, "queue_full", 1.0)}
        assert all(e.request_id for e in refused)


def test_api_keys(keyed_server, monkeypatch):
    with pytest.raises(AuthenticationError) as caught:
        ExplainClient(keyed_server.url).models()
    assert caught.value.code == "missing_api_key"
    with pytest.raises(AuthenticationError) as caught:
        ExplainClient(keyed_server.url, api_key="x" * 20).models()
    assert caught.value.code == "invalid_api_key"
    assert ExplainClient(keyed_server.url, api_key=API_KEY).models()[0].name == "tiny"
    monkeypatch.setenv("EXPLAIN_API_KEY", API_KEY)
    monkeypatch.setenv("EXPLAIN_URL", keyed_server.url)
    assert ExplainClient().predict("tiny", photo()).model == "tiny"


def test_timeouts_and_unreachable_services():
    with real_server({}, forward_s=2.0) as server:
        client = ExplainClient(server.url, timeout=0.5, retry=RetryPolicy(max_retries=0))
        with pytest.raises(TimeoutError):
            client.predict("tiny", photo())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    client = ExplainClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=2, backoff_s=0.01))
    with pytest.raises(ConnectionError):
        client.models()


def test_the_retry_policy():
    import httpx

    policy = RetryPolicy(max_retries=2, backoff_s=1.0, max_retry_after_s=10)
    busy = httpx.Response(503)
    assert policy.delay_after_response(0, busy, retry_after=3.0) == 3.0
    assert policy.delay_after_response(0, busy, retry_after=30.0) is None  # longer than we wait for
    assert 0.5 <= policy.delay_after_response(1, busy, retry_after=None) <= 2.0
    assert policy.delay_after_response(2, busy, retry_after=1.0) is None  # no attempts left
    assert policy.delay_after_response(0, httpx.Response(500), retry_after=None) is None
    assert policy.delay_after_error(0, httpx.ConnectError("refused"), idempotent=False) is not None
    assert policy.delay_after_error(0, httpx.ReadError("reset"), idempotent=False) is None  # may have run
    assert policy.delay_after_error(0, httpx.ReadError("reset"), idempotent=True) is not None


def test_retry_after_in_seconds_or_as_an_http_date():
    import httpx

    from explain_client.errors import retry_after_s

    def header(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after_s(header("2")) == 2.0
    assert retry_after_s(header("Wed, 21 Oct 2015 07:28:10 GMT"), now=1445412480.0) == 10.0  # 07:28:00 GMT
    assert retry_after_s(header("Wed, 21 Oct 2015 07:28:10 GMT"), now=1445412500.0) == 0.0  # already past
    assert retry_after_s(header("soon")) is None and retry_after_s(header("-1")) is None
    assert retry_after_s(httpx.Response(503)) is None


class LosesTheFirstJobAnswer(httpx.HTTPTransport):
    """Sends every request; the first answer to a job-creating POST is lost on the way back (a broken
    connection after the service made the job), as a read error."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: list[httpx.Response] = []
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and "idempotency-key" in request.headers:
            self.keys.append(request.headers["idempotency-key"])
            if not self.lost:
                response.read()
                self.lost.append(response)
                raise httpx.ReadError("connection reset while reading the answer")
        return response


@pytest.mark.parametrize("submit", ["explain", "visualize"])
def test_a_job_whose_answer_was_lost_is_retried_with_its_key_and_is_one_job(server, submit):
    transport = LosesTheFirstJobAnswer()
    with ExplainClient(server.url, transport=transport, retry=RetryPolicy(max_retries=2, backoff_s=0.01)) as client:
        if submit == "explain":
            job = client.submit_explain("tiny", photo(seed=3), method="cam")
        else:
            job = client.visualize("tiny", class_=1, steps=3, size=[16, 16])
        lost = transport.lost[0]
        assert lost.status_code == 202 and job.id == lost.json()["id"]  # the job the lost answer named
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        assert client.wait(job, timeout=60).status == "succeeded"
