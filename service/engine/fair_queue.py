"""A bounded queue served round robin by owner (API key): each `get` takes the oldest item of the next owner in
turn, so that a batch gathers one job of every waiting key before a second of any, and a key with many items
waiting does not hold back another key's one. Within a key, first come, first served. The model's queue of
`ExplainJob`s is one; the CPU pool's tasks (`service.http.cpu_pool`) are another."""

import queue
from collections import OrderedDict, deque
from typing import Protocol, TypeVar


class Owned(Protocol):
    @property
    def owner(self) -> str: ...


T = TypeVar("T", bound=Owned)


class FairQueue(queue.Queue[T]):
    """A `queue.Queue` (the same blocking, `maxsize` and `mutex`) whose order is round robin by `item.owner`; it
    overrides only the storage hooks that `queue.Queue` provides for this."""

    def _init(self, maxsize: int) -> None:
        self.by_owner: OrderedDict[str, deque[T]] = OrderedDict()
        self.size = 0

    def _qsize(self) -> int:
        return self.size

    def _put(self, item: T) -> None:
        self.by_owner.setdefault(item.owner, deque()).append(item)
        self.size += 1

    def _get(self) -> T:
        owner, items = next(iter(self.by_owner.items()))
        item = items.popleft()
        if items:
            self.by_owner.move_to_end(owner)  # its next item waits for every other owner's turn
        else:
            del self.by_owner[owner]
        self.size -= 1
        return item

    def waiting_of(self, owner: str) -> int:
        """How many of the queued items are `owner`'s."""
        with self.mutex:
            return len(self.by_owner.get(owner, ()))
