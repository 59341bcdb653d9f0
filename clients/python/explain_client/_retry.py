"""When to try a request again, and after how long: shared by the sync and async clients.

Retried: answers 429 and 503 (the service's overload and draining answers; a gateway's rate limit), after
`Retry-After` when the answer has one, else after an exponential backoff with jitter; a connection that could not
be opened (the request never left); and, for requests that are safe to repeat (reads, deletes, predict and
explain, which change nothing), a connection that broke or timed out before the answer. A request that creates
a job is not repeated after it may have reached the service.
"""

import random
from dataclasses import dataclass, field

import httpx

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    """Attempts after the first; 0 turns retries off."""
    backoff_s: float = 0.5
    """The first wait without `Retry-After`; doubled at each attempt, with jitter (x 0.5..1)."""
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0
    """A `Retry-After` longer than this is not waited for: the error is raised."""
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    def delay_after_response(self, attempt: int, response: httpx.Response, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None not to retry this answer."""
        if attempt >= self.max_retries or response.status_code not in self.statuses:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return self._backoff(attempt)

    def delay_after_error(self, attempt: int, error: httpx.TransportError, idempotent: bool) -> float | None:
        """Seconds to wait before attempt `attempt + 1` after a transport error, or None not to retry."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, NOT_SENT) or idempotent:
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, self.max_backoff_s) * (0.5 + random.random() / 2)
