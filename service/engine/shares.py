"""Places of one kind (long tasks, queue places) held by owners (API keys) until each holder's future resolves,
with a bound on all of them and one per owner, so that one key at its bound leaves the others their share."""

import threading
from collections import Counter
from concurrent.futures import Future
from typing import Literal


class Shares:
    def __init__(self, total: int, per_owner: int) -> None:
        self.total = total
        self.per_owner = min(per_owner, total)
        self._held = 0
        self._by_owner: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    def take(self, owner: str, future: Future) -> Literal["owner", "total"] | None:
        """Hold a place for `owner` until `future` is resolved (any thread); or which bound refused it."""
        with self._lock:
            if self._by_owner[owner] >= self.per_owner:
                return "owner"
            if self._held >= self.total:
                return "total"
            self._held += 1
            self._by_owner[owner] += 1
        future.add_done_callback(lambda _: self._release(owner))
        return None

    def _release(self, owner: str) -> None:
        with self._lock:
            self._held -= 1
            self._by_owner[owner] -= 1
            if not self._by_owner[owner]:
                del self._by_owner[owner]
