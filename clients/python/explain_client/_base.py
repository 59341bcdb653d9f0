"""What the sync and async clients share: configuration, and turning answers into typed models or errors."""

import json
import os
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from explain_client import _calls
from explain_client._retry import RetryPolicy
from explain_client.errors import ConnectionError, TimeoutError
from explain_client.models import JobStatus
from explain_client.sse import Event

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "EXPLAIN_URL"
API_KEY_ENV = "EXPLAIN_API_KEY"
USER_AGENT = "explain-client/0.1"
M = TypeVar("M", bound=BaseModel)


class ClientBase:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 60.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Args:
        base_url: the service, default `$EXPLAIN_URL` or http://127.0.0.1:8000.
        api_key: sent as `Authorization: Bearer <key>`; default `$EXPLAIN_API_KEY` (none when unset).
        timeout: seconds for each request (connect, read, write), or an `httpx.Timeout`.
        retry: when to retry (429, 503 and connection errors; see `RetryPolicy`); `RetryPolicy(max_retries=0)`
            turns retries off.
        headers: sent with every request.
        """
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _http_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout": self.timeout, "headers": self.headers}

    @staticmethod
    def _request_options(call: _calls.Call) -> dict[str, Any]:
        return {
            "params": call.params,
            "data": call.data,
            "files": call.files,
            "json": call.json,
            "headers": call.headers or None,
        }

    @staticmethod
    def _parse(model: type[M], response: httpx.Response) -> M:
        return model.model_validate_json(response.content)

    @staticmethod
    def _job_of(event: Event) -> JobStatus:
        return JobStatus.model_validate(json.loads(event.data))

    def _events_timeout(self) -> httpx.Timeout:
        """Waiting for events: no read timeout (the service sends a comment every 15 s on an idle stream)."""
        return httpx.Timeout(self.timeout.connect, read=None, write=self.timeout.write, pool=self.timeout.pool)

    @staticmethod
    def _transport_error(error: httpx.TransportError) -> Exception:
        if isinstance(error, httpx.TimeoutException):
            return TimeoutError(f"no answer in time: {error!r}")
        return ConnectionError(f"the service could not be reached or the connection broke: {error!r}")
