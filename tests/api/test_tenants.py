"""Two API keys sharing one service: one key's floods of jobs, admitted or refused, never erase the other's
finished job, and a key at its bound of stored jobs or of long work leaves the other its share."""

import asyncio

import pytest

from tests.api.test_jobs import ASYNC
from tests.api.test_long_work import LONG, slow_model
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
URL = "/v1/models/tiny/explain"
A = {"x-api-key": "tenant-a-key-0123456789"}
B = {"x-api-key": "tenant-b-key-0123456789"}


async def wait_until_finished(client, location: str, key: dict[str, str]) -> dict | None:
    """The job's final status; None when it was forgotten to make room for its own key's newer jobs."""
    for _ in range(1500):
        answer = await client.get(location, params={"result": "true"}, headers=key)
        if answer.status_code == 404:
            return None
        status = answer.json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job did not end: {status}")


async def test_one_keys_job_floods_leave_the_other_keys_result_readable(serve, noise_png):
    keys = f"{A['x-api-key']},{B['x-api-key']}"
    async with serve({"tiny": tiny_loaded()}, api_keys=keys, max_jobs=4, max_jobs_per_tenant=4) as client:
        theirs = await client.post(URL, files={"image": noise_png}, headers=B | ASYNC)
        assert theirs.status_code == 202
        location = theirs.headers["location"]
        result = (await wait_until_finished(client, location, B))["result"]

        answers = []
        for _ in range(3):  # floods of A's jobs, each waited for: A's own finished jobs make the room
            flood = [await client.post(URL, files={"image": noise_png}, headers=A | ASYNC) for _ in range(8)]
            answers += [answer.status_code for answer in flood]
            for answer in flood:
                if answer.status_code == 202:
                    await wait_until_finished(client, answer.headers["location"], A)
            mine = await client.get(location, params={"result": "true"}, headers=B)
            assert mine.status_code == 200 and mine.json()["result"] == result
        assert set(answers) <= {202, 503} and answers.count(202) >= 9  # at least the 3 places B leaves, each time

        # A refused request (an unknown method) on a full store erases nothing either.
        refused = await client.post(URL, params={"method": "nope"}, files={"image": noise_png}, headers=A | ASYNC)
        assert refused.status_code == 400
        assert (await client.get(location, headers=B)).status_code == 200
        # B still has its share: a new job of B's is admitted while A's fill the store.
        assert (await client.post(URL, files={"image": noise_png}, headers=B | ASYNC)).status_code == 202


async def test_a_key_at_its_share_of_long_work_leaves_the_other_key_its_share(serve, noise_png):
    """MAX_LONG_TASKS 4 with keys on: each key may run 2. A holds both of its slots with visualizations; B's
    visualization, feature maps, filters and long explain job are still admitted."""
    keys = f"{A['x-api-key']},{B['x-api-key']}"
    long_visualization = {"objective": {"kind": "class", "class": 1}, "steps": 1000}
    async with serve(slow_model(0.02), api_keys=keys, max_long_tasks=4, pass_chunk_size=1) as client:
        slow = "/v1/models/slow"
        held = [await client.post(f"{slow}/visualizations", json=long_visualization, headers=A) for _ in range(2)]
        assert [answer.status_code for answer in held] == [202, 202]
        refused = await client.post(f"{slow}/visualizations", json=long_visualization, headers=A)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_jobs"
        assert "its share" in refused.json()["error"]["message"]
        also_refused = await client.post(f"{slow}/activations", files={"image": noise_png}, headers=A)
        assert also_refused.status_code == 503

        theirs = await client.post(f"{slow}/visualizations", json=long_visualization, headers=B)
        assert theirs.status_code == 202
        assert (await client.post(f"{slow}/activations", files={"image": noise_png}, headers=B)).status_code == 200
        assert (await client.get(f"{slow}/filters", headers=B)).status_code == 200
        await client.delete(theirs.headers["location"], headers=B)
        job = await client.post(URL.replace("tiny", "slow"), params=LONG, files={"image": noise_png}, headers=B | ASYNC)
        assert job.status_code == 202
        for answer in held:
            await client.delete(answer.headers["location"], headers=A)
        await client.delete(job.headers["location"], headers=B)
