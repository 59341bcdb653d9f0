"""Jobs: explain requests sent with `Prefer: respond-async`, their status, events, cancellation and bounds."""

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.api.test_long_work import LONG, URL, slow_model
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
ASYNC = {"prefer": "respond-async"}
URL_TINY = "/v1/models/tiny/explain"


async def wait_until_finished(client, location: str, timeout_s: float = 30) -> dict:
    """Poll the job's status (which leaves the result out) until it ends; then its status with the result."""
    for _ in range(int(timeout_s / 0.02)):
        status = (await client.get(location)).json()
        assert "result" not in status
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return (await client.get(location, params={"result": "true"})).json()
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job did not end: {status}")


async def test_an_explain_request_sent_async_is_a_job_with_the_same_answer(serve, noise_png):
    params = {"method": "grad_cam,occlusion", "top_k": 2, "map_encoding": "base64"}
    async with serve({"tiny": tiny_loaded()}) as client:
        url = "/v1/models/tiny/explain"
        accepted = await client.post(url, params=params, files={"image": noise_png}, headers=ASYNC)
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["preference-applied"] == "respond-async"
        location = accepted.headers["location"]
        body = accepted.json()
        assert location == f"/v1/jobs/{body['id']}" and body["kind"] == "explain" and body["model"] == "tiny"
        assert body["status"] in ("queued", "running") and "result" not in body
        status = await wait_until_finished(client, location)
        direct = (await client.post(url, params=params, files={"image": noise_png})).json()
    assert status["status"] == "succeeded" and status["progress"]["done"] == status["progress"]["total"]
    assert status["finished_at"] >= status["started_at"] >= status["created_at"]
    ours = [(e["method"], e["class"]["index"], e["map"]) for e in status["result"]["explanations"]]
    assert ours == [(e["method"], e["class"]["index"], e["map"]) for e in direct["explanations"]]


async def events(client, location: str) -> list[tuple[str, dict]]:
    received = []
    async with client.stream("GET", f"{location}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                received.append((name, json.loads(line.removeprefix("data: "))))
    return received


async def test_events_report_progress_in_order_and_end_with_the_result(serve, noise_png):
    async with serve(slow_model(0.01), pass_chunk_size=4) as client:
        accepted = await client.post(URL, params=LONG, files={"image": noise_png}, headers=ASYNC)
        received = await events(client, accepted.headers["location"])
    names = [name for name, _ in received]
    assert names[-1] == "succeeded" and set(names[:-1]) == {"progress"}
    done = [data["progress"]["done"] for _, data in received]
    assert done == sorted(done) and len(set(done)) >= 8  # 64 passes in chunks of 4: a step at a time
    assert all(data["result"] is None for _, data in received[:-1] if "result" in data)
    assert received[-1][1]["result"]["explanations"][0]["map"]["shape"] == [32, 32]


async def test_a_deleted_job_is_cancelled_and_its_work_stops(serve, noise_png):
    models = slow_model(0.05)
    module = models["slow"].module
    async with serve(models, pass_chunk_size=1) as client:
        accepted = await client.post(URL, params=LONG, files={"image": noise_png}, headers=ASYNC)
        location = accepted.headers["location"]
        while (await client.get(location)).json()["progress"]["done"] < 2:
            await asyncio.sleep(0.02)
        cancelled = await client.delete(location)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["error"]["code"] == "cancelled"
        await asyncio.sleep(0.2)  # the chunk in hand ends
        calls = module.calls
        await asyncio.sleep(0.3)
        assert module.calls == calls
        again = await client.delete(location)
        assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_unknown_jobs_and_other_keys_jobs_are_404(serve, noise_png):
    keys = ["k" * 16, "q" * 16]
    async with serve({"tiny": tiny_loaded()}, api_keys=",".join(keys)) as client:
        mine = {"x-api-key": keys[0]}
        accepted = await client.post("/v1/models/tiny/explain", files={"image": noise_png}, headers={**ASYNC, **mine})
        location = accepted.headers["location"]
        assert (await client.get(location, headers=mine)).status_code == 200
        for headers in ({"x-api-key": keys[1]}, {}):
            answer = await client.get(location, headers=headers)
            assert answer.status_code == (404 if headers else 401)
        missing = await client.get("/v1/jobs/nope", headers=mine)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"


async def test_jobs_are_bounded_and_finished_ones_make_room(serve, noise_png):
    async with serve(slow_model(0.05), pass_chunk_size=1, max_jobs=1) as client:
        first = await client.post(URL, params=LONG, files={"image": noise_png}, headers=ASYNC)
        refused = await client.post(URL, files={"image": noise_png}, headers=ASYNC)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_jobs"
        await client.delete(first.headers["location"])
        second = await client.post(URL, files={"image": noise_png}, headers=ASYNC)
        assert second.status_code == 202
        assert (await client.get(first.headers["location"])).status_code == 404  # forgotten to make room


async def test_a_job_creating_request_sent_again_with_its_idempotency_key_returns_the_same_job(serve, noise_png):
    other_png = noise_png[:-16] + bytes(16)  # another image (a broken one: it is refused before it is decoded)
    async with serve({"tiny": tiny_loaded()}) as client:
        key = {"idempotency-key": "0b6f6c2e-5d7e-4c38-9a43-3e5f1d2a7c10"}
        first = await client.post(URL_TINY, params={"method": "cam"}, files={"image": noise_png}, headers=ASYNC | key)
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        # The same request as JSON fields instead of a query string is the same request.
        again = await client.post(URL_TINY, data={"method": "cam"}, files={"image": noise_png}, headers=ASYNC | key)
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        other = await client.post(URL_TINY, params={"method": "cam"}, files={"image": other_png}, headers=ASYNC | key)
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        changed = await client.post(
            URL_TINY, params={"method": "saliency"}, files={"image": noise_png}, headers=ASYNC | key
        )
        assert changed.status_code == 422
        unkeyed = await client.post(URL_TINY, params={"method": "cam"}, files={"image": noise_png}, headers=ASYNC)
        assert unkeyed.headers["location"] != first.headers["location"]  # no key: a new job

        request = {"objective": {"kind": "class", "class": 1}, "steps": 4, "size": [16, 16]}
        vis = "/v1/models/tiny/visualizations"
        made = await client.post(vis, json=request, headers={"idempotency-key": "vis-1"})
        remade = await client.post(vis, json=request, headers={"idempotency-key": "vis-1"})
        assert remade.headers["location"] == made.headers["location"] and remade.headers["idempotent-replayed"]
        for bad in ("", "x" * 256, "spaces are not allowed"):
            refused = await client.post(vis, json=request, headers={"idempotency-key": bad})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_idempotency_key"


async def test_finished_jobs_are_swept_when_their_ttl_is_over_without_a_request(serve, noise_png, monkeypatch):
    monkeypatch.setattr("service.http.runtime.JOB_SWEEP_S", 0.05)
    async with serve({"tiny": tiny_loaded()}, job_ttl_s=0.2) as client:
        accepted = await client.post(URL_TINY, files={"image": noise_png}, headers=ASYNC)
        store = client.app.state.runtime.jobs
        await wait_until_finished(client, accepted.headers["location"])
        assert store.stored_bytes() > 0
        for _ in range(100):
            if store.stored_bytes() == 0:
                break
            await asyncio.sleep(0.02)
        assert store.stored_bytes() == 0 and store.unfinished() == 0


async def test_a_key_at_its_share_of_job_bytes_is_refused(serve):
    """A job weighs its answer's estimate until it ends: a 512 px PNG overlay, about 1 MiB, twice is over 2 MiB."""
    mib = 1024 * 1024
    limits = {"max_answer_bytes": 2 * mib, "max_job_bytes_per_tenant": 2 * mib, "max_job_bytes": 8 * mib}
    pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    photo = buffer.getvalue()
    async with serve(slow_model(0.05), pass_chunk_size=1, **limits) as client:
        big = {**LONG, "include": "overlay", "overlay_format": "png"}
        first = await client.post(URL, params=big, files={"image": photo}, headers=ASYNC)
        assert first.status_code == 202, first.text
        refused = await client.post(URL, params=big, files={"image": photo}, headers=ASYNC)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_jobs"
        assert "its share" in refused.json()["error"]["message"]


async def test_while_draining_jobs_run_on_and_stay_readable_and_cancellable(serve, noise_png):
    """SIGTERM's drain refuses new work, but the jobs accepted before it go on (the drain waits for them, and for
    their results to be read, up to its grace), and their reads, events and cancels keep working."""
    async with serve(slow_model(0.05), pass_chunk_size=1) as client:
        accepted = await client.post(URL, params=LONG, files={"image": noise_png}, headers=ASYNC)
        short = await client.post(URL, files={"image": noise_png}, headers=ASYNC)
        lifecycle = client.app.state.lifecycle
        lifecycle.begin_drain(10)
        assert lifecycle.busy() >= 1  # the drain waits for the unfinished jobs
        refused = await client.post(URL, files={"image": noise_png}, headers=ASYNC)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"

        jobs, began = client.app.state.runtime.jobs, lifecycle.drain_started_at()
        while (await client.get(short.headers["location"])).json()["status"] != "succeeded":
            await asyncio.sleep(0.02)
        assert jobs.undelivered(ended_after=began) == 1  # ended in the drain, its result not read: waited for
        finished = (await client.get(short.headers["location"], params={"result": "true"})).json()
        assert finished["status"] == "succeeded" and finished["result"]["explanations"]
        assert jobs.undelivered(ended_after=began) == 0
        location = accepted.headers["location"]
        running = await client.get(location)
        assert running.status_code == 200 and running.json()["status"] in ("queued", "running")
        cancelled = await client.delete(location)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        events = await client.get(f"{location}/events")  # in-process the stream is read whole: its last event
        assert events.status_code == 200 and events.text.startswith("event: cancelled")
        assert lifecycle.busy() == 0  # nothing left: the drain may end


@pytest.mark.slow
def test_events_reach_a_real_client_while_the_job_runs(noise_png):
    """Through real uvicorn the stream is not buffered: progress arrives while the job is still running."""
    import httpx

    from tests.real_server import real_server

    with real_server({"pass_chunk_size": "1"}, forward_s=0.05) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            accepted = client.post("/v1/models/tiny/explain", params=LONG, files={"image": noise_png}, headers=ASYNC)
            location = accepted.headers["location"]
            with client.stream("GET", f"{location}/events") as stream:
                progress = {"done": 0}
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        progress = json.loads(line.removeprefix("data: "))["progress"]
                        if progress["done"] > 0:
                            break
                assert client.get(location).json()["status"] == "running"
            assert 0 < progress["done"] < progress["total"] == 64
            client.delete(location)
