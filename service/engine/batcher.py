"""Gathering a batch from a queue: the first item waits, companions are awaited for at most a short delay, and
only while some are on their way."""

import queue
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def collect_batch(
    source: "queue.Queue[T]",
    max_size: int,
    max_delay_s: float,
    poll_s: float = 0.1,
    companions_coming: Callable[[], bool] = lambda: True,
) -> list[T]:
    """Take up to `max_size` items from `source`.

    Blocks up to `poll_s` for a first item (returns [] if none came, so that the caller can check whether to
    stop); then waits at most `max_delay_s` from that moment for more, but not at all while
    `companions_coming()` says that no other item is on its way (a lone request is not held back for nothing).
    """
    try:
        first = source.get(timeout=poll_s)
    except queue.Empty:
        return []
    batch = [first]
    deadline = time.monotonic() + max_delay_s
    while len(batch) < max_size:
        remaining = deadline - time.monotonic()
        try:
            if remaining > 0 and companions_coming():
                batch.append(source.get(timeout=remaining))
            else:
                batch.append(source.get_nowait())
        except queue.Empty:
            break
    return batch
