"""`collect_batch` with a plain `queue.Queue`."""

import queue
import threading
import time

from service.engine.batcher import collect_batch


def filled(n: int) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for i in range(n):
        q.put(i)
    return q


def test_takes_at_most_max_size_in_order():
    q = filled(5)
    assert collect_batch(q, max_size=3, max_delay_s=0) == [0, 1, 2]
    assert collect_batch(q, max_size=3, max_delay_s=0) == [3, 4]


def test_returns_empty_when_nothing_comes():
    assert collect_batch(queue.Queue(), max_size=4, max_delay_s=0.01, poll_s=0.01) == []


def test_waits_for_companions_up_to_the_delay():
    q = filled(1)
    threading.Timer(0.02, q.put, args=(1,)).start()
    assert collect_batch(q, max_size=4, max_delay_s=0.5) == [0, 1]


def test_does_not_wait_past_the_delay():
    q = filled(1)
    started = time.monotonic()
    assert collect_batch(q, max_size=4, max_delay_s=0.05) == [0]
    assert time.monotonic() - started < 2  # generous: asserts it returns, not how fast


def test_does_not_wait_when_no_companion_is_coming():
    q = filled(1)
    coming = [False]
    started = time.monotonic()
    assert collect_batch(q, max_size=4, max_delay_s=30, companions_coming=lambda: coming[0]) == [0]
    assert time.monotonic() - started < 10  # returns at once rather than after the 30 s delay


def test_takes_what_is_already_queued_even_when_no_more_are_coming():
    q = filled(3)
    assert collect_batch(q, max_size=4, max_delay_s=30, companions_coming=lambda: False) == [0, 1, 2]
