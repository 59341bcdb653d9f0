"""The model's queue serves API keys in turn: a key with many requests waiting does not hold back another's."""

import queue
import time

import pytest
import torch

from service.engine.fair_queue import FairQueue
from service.engine.work import ExplainJob


def job(owner: str, number: int) -> ExplainJob:
    return ExplainJob(
        torch.zeros(1), (), None, 1, None, time.monotonic() + 30, request_id=f"{owner}{number}", owner=owner
    )


def test_owners_are_served_in_turn_and_each_first_come_first_served():
    waiting = FairQueue(maxsize=16)
    for item in [job("a", 1), job("a", 2), job("a", 3), job("a", 4), job("b", 1), job("c", 1), job("b", 2)]:
        waiting.put_nowait(item)
    assert waiting.qsize() == 7 and waiting.waiting_of("a") == 4 and waiting.waiting_of("b") == 2
    order = [waiting.get_nowait().request_id for _ in range(7)]
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]
    with pytest.raises(queue.Empty):
        waiting.get_nowait()


def test_it_is_bounded_and_blocks_like_a_queue():
    waiting = FairQueue(maxsize=2)
    waiting.put_nowait(job("a", 1))
    waiting.put_nowait(job("b", 1))
    assert waiting.full()
    with pytest.raises(queue.Full):
        waiting.put_nowait(job("c", 1))
    assert waiting.get(timeout=1).request_id == "a1"
    with pytest.raises(queue.Empty):
        FairQueue(maxsize=1).get(timeout=0.01)
