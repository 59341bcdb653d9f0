"""The CPU pool serves API keys in turn: one key's many decodes and encodes do not queue another's behind them."""

import threading

import pytest

from service.http.cpu_pool import CpuPool


def test_keys_take_turns_and_each_keeps_its_order():
    pool = CpuPool(workers=1)
    gate, started, ran = threading.Event(), threading.Event(), []
    try:
        blocker = pool.submit("a", lambda: (started.set(), gate.wait(5)))
        started.wait(5)  # the only thread is busy: everything below waits
        futures = [
            pool.submit(owner, ran.append, f"{owner}{n}") for owner, n in [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
        ]
        gate.set()
        for future in [blocker, *futures]:
            future.result(timeout=5)
        assert ran == ["a1", "b1", "a2", "a3"]
        with pytest.raises(ZeroDivisionError):
            pool.submit("a", lambda: 1 / 0).result(timeout=5)  # the error reaches the caller; the thread goes on
        assert pool.submit("b", sum, [1, 2]).result(timeout=5) == 3
    finally:
        pool.shutdown()


def test_shutdown_cancels_what_has_not_started_and_lets_the_running_task_end():
    pool = CpuPool(workers=1)
    gate, started = threading.Event(), threading.Event()
    running = pool.submit("a", lambda: (started.set(), gate.wait(5))[1])
    started.wait(5)
    waiting = pool.submit("b", lambda: "never")
    threading.Timer(0.1, gate.set).start()
    pool.shutdown()
    assert running.result(timeout=0) is True and waiting.cancelled()
