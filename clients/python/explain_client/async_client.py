"""The asynchronous client: `AsyncExplainClient`, the same methods as `ExplainClient`, awaited.

async with AsyncExplainClient("http://127.0.0.1:8000") as client:
    answers = await asyncio.gather(*(client.predict("efficientnet_lite0", path) for path in paths))
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Unpack

import httpx

from api_schemas import MethodList, ModelList
from explain_client import _calls
from explain_client._base import ClientBase
from explain_client._calls import ExplainOptions, ImageInput, VisualizationOptions
from explain_client.errors import JobError, TimeoutError, api_error
from explain_client.models import (
    ActivationsResponse,
    ExplainResponse,
    FiltersResponse,
    JobStatus,
    MethodInfo,
    ModelInfo,
    PredictResponse,
)
from explain_client.sse import aparse_events


class AsyncExplainClient(ClientBase):
    def __init__(
        self, base_url: str | None = None, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> "AsyncExplainClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _calls.Call) -> httpx.Response:
        """Send `call`, retrying as the policy says; the 2xx answer, or the error of the last attempt."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **self._request_options(call))
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_error(attempt, exc, call.idempotent)
                if delay is None:
                    raise self._transport_error(exc) from exc
            else:
                if response.is_success:
                    return response
                error = api_error(response)
                delay = self.retry.delay_after_response(attempt, response, error.retry_after)
                if delay is None:
                    raise error
            await asyncio.sleep(delay)
            attempt += 1

    # Catalogue

    async def methods(self) -> list[MethodInfo]:
        """Every explanation method: paper, raw-map definition, needs, cost, parameters."""
        return self._parse(MethodList, await self._send(_calls.get("/v1/methods"))).methods

    async def models(self) -> list[ModelInfo]:
        """The warm models."""
        return self._parse(ModelList, await self._send(_calls.get("/v1/models"))).models

    async def model(self, name: str) -> ModelInfo:
        """One model: input size, classes, default and usable layers, applicable methods."""
        return self._parse(ModelInfo, await self._send(_calls.get(_calls.model_path(name))))

    # Inference

    async def predict(
        self, model: str, image: ImageInput, *, threshold: float | None = None, score_threshold: float | None = None
    ) -> PredictResponse:
        """Logits and top classes of one image; a multilabel model's labels that reach `threshold` (0.5 by
        default) in `positive_classes`; a detection model's boxes that reach `score_threshold` (0.5 by default)
        in `detections`."""
        return self._parse(PredictResponse, await self._send(_calls.predict(model, image, threshold, score_threshold)))

    async def explain(
        self,
        model: str,
        image: ImageInput,
        *,
        method: str | Sequence[str] | None = None,
        classes: int | str | Sequence[int | str] | None = None,
        reference: ImageInput | None = None,
        mask: ImageInput | None = None,
        **options: Unpack[ExplainOptions],
    ) -> ExplainResponse:
        """Maps of one image for one or several methods and classes (index or label), or the `top_k` classes; for
        an embedding model, maps of its similarity to `reference`, a second image; for a segmentation model, the
        classes' logits summed over the pixels of `mask` (an image of the image's size, not black where it counts)
        instead of over the pixels predicted as each class."""
        parameters = _calls.explain_parameters(method, classes, **options)
        return self._parse(
            ExplainResponse, await self._send(_calls.explain(model, image, parameters, reference=reference, mask=mask))
        )

    async def activations(
        self, model: str, image: ImageInput, *, layer: str | None = None, top_n: int | None = None
    ) -> ActivationsResponse:
        """An image's feature maps at a layer (default the model's)."""
        return self._parse(ActivationsResponse, await self._send(_calls.activations(model, image, layer, top_n)))

    async def filters(self, model: str, *, layer: str | None = None) -> FiltersResponse:
        """The kernels of a convolution over the colour channels (default the first)."""
        return self._parse(FiltersResponse, await self._send(_calls.filters(model, layer)))

    # Jobs

    async def submit_explain(
        self,
        model: str,
        image: ImageInput,
        *,
        method: str | Sequence[str] | None = None,
        classes: int | str | Sequence[int | str] | None = None,
        idempotency_key: str | None = None,
        reference: ImageInput | None = None,
        mask: ImageInput | None = None,
        **options: Unpack[ExplainOptions],
    ) -> JobStatus:
        """Send an explain request as a job (`Prefer: respond-async`); `wait` for its result. It carries an
        `Idempotency-Key` (`idempotency_key`, or a new UUID), so that a retry returns the same job."""
        parameters = _calls.explain_parameters(method, classes, **options)
        return self._parse(
            JobStatus,
            await self._send(
                _calls.explain(
                    model,
                    image,
                    parameters,
                    as_job=True,
                    idempotency_key=idempotency_key,
                    reference=reference,
                    mask=mask,
                )
            ),
        )

    async def visualize(
        self,
        model: str,
        *,
        class_: int | str | None = None,
        layer: str | None = None,
        channel: int | None = None,
        x: int | None = None,
        y: int | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[VisualizationOptions],
    ) -> JobStatus:
        """Start a feature visualization of a class, a channel of a layer, or a neuron (with x/y); a job (with an
        `Idempotency-Key`, as `submit_explain`)."""
        objective = _calls.objective(class_, layer, channel, x, y)
        return self._parse(
            JobStatus, await self._send(_calls.visualize(model, objective, dict(options), idempotency_key))
        )

    async def job(self, job_id: str | JobStatus) -> JobStatus:
        """A job's status (and its result once it has succeeded)."""
        return self._parse(JobStatus, await self._send(_calls.job_status(_job_id(job_id))))

    async def cancel(self, job_id: str | JobStatus) -> JobStatus:
        """Cancel a job (harmless when it has ended)."""
        return self._parse(JobStatus, await self._send(_calls.delete(_calls.job_path(_job_id(job_id)))))

    async def events(self, job_id: str | JobStatus) -> AsyncIterator[JobStatus]:
        """The job's status at each change, from its Server-Sent Events, until it ends (the last one has the
        result)."""
        path = _calls.job_path(_job_id(job_id), "events")
        try:
            async with self._http.stream("GET", path, timeout=self._events_timeout()) as response:
                if not response.is_success:
                    await response.aread()
                    raise api_error(response)
                async for event in aparse_events(response.aiter_lines()):
                    yield self._job_of(event)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def wait(
        self,
        job_id: str | JobStatus,
        *,
        on_progress: Callable[[JobStatus], None | Awaitable[None]] | None = None,
        timeout: float | None = None,
    ) -> JobStatus:
        """Follow a job until it ends; `on_progress` gets every status. Returns the succeeded job (with its
        `result`).

        Raises:
            JobError: it failed or was cancelled.
            TimeoutError: still running after `timeout` seconds (the job goes on; `cancel` it if need be).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        status = await self.job(job_id)
        await _report(on_progress, status)
        while not status.finished:
            async with contextlib.aclosing(self.events(status)) as events:
                async for status in events:
                    await _report(on_progress, status)
                    if status.finished or _past(deadline):
                        break
            if not status.finished:
                if _past(deadline):
                    raise TimeoutError(f"job {status.id} is still {status.status} after {timeout} s")
                status = await self.job(status)  # the stream ended early: read the state, and follow it again
        if status.status != "succeeded":
            raise JobError(status)
        return status


async def _report(on_progress: Callable[[JobStatus], None | Awaitable[None]] | None, status: JobStatus) -> None:
    if on_progress is not None and (pending := on_progress(status)) is not None:
        await pending


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _job_id(job: str | JobStatus) -> str:
    return job if isinstance(job, str) else job.id
