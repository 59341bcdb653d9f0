"""The async client against a real server process: concurrent requests, typed errors, jobs with an async
progress callback and the event stream."""

import asyncio

import numpy as np
import pytest

from explain_client import AsyncExplainClient, BadRequestError, ExplainClient
from tests.explain_client.conftest import photo

pytestmark = pytest.mark.slow


def test_concurrent_explanations_match_the_sync_client(server):
    images = [photo(seed=s) for s in range(4)]

    async def main():
        async with AsyncExplainClient(server.url, timeout=30) as client:
            return await asyncio.gather(*(client.explain("tiny", im, method="grad_cam", top_k=2) for im in images))

    answers = asyncio.run(main())
    with ExplainClient(server.url) as sync:
        expected = [sync.explain("tiny", im, method="grad_cam", top_k=2) for im in images]
    for got, want in zip(answers, expected, strict=True):
        assert [e.class_.index for e in got.explanations] == [e.class_.index for e in want.explanations]
        np.testing.assert_allclose(
            got.explanations[0].map_array(), want.explanations[0].map_array(), rtol=1e-4, atol=1e-6
        )


def test_errors_jobs_and_events(server):
    async def main():
        async with AsyncExplainClient(server.url, timeout=30) as client:
            with pytest.raises(BadRequestError) as caught:
                await client.explain("tiny", photo(), method="cam", classes=1, top_k=2)
            assert caught.value.code == "conflicting_parameters"
            assert {m.name for m in await client.models()} == {"tiny"}

            seen = []

            async def record(status):
                seen.append(status.progress.done)

            job = await client.visualize("tiny", class_=0, steps=4, size=[16, 16])
            done = await client.wait(job, on_progress=record, timeout=60)
            statuses = [s.status async for s in client.events(job)]
            cancelled = await client.cancel(await client.visualize("tiny", class_=0, steps=900))
            return done, seen, statuses, cancelled

    done, seen, statuses, cancelled = asyncio.run(main())
    assert done.status == "succeeded" and done.result.image().size == (16, 16)
    assert seen == sorted(seen) and seen[-1] == 4
    assert statuses == ["succeeded"]
    assert cancelled.status == "cancelled"
