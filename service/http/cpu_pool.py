"""The threads that decode, encode and parse for every request, served round robin by API key: a key with many
requests in flight does not make another key's one wait behind all of its own (`FairQueue`)."""

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from service.engine.fair_queue import FairQueue


@dataclass
class CpuTask:
    owner: str
    fn: Callable[..., Any] | None  # None: the thread that takes it stops
    args: tuple[Any, ...] = ()
    future: Future = field(default_factory=Future)


class CpuPool:
    def __init__(self, workers: int, name: str = "cpu") -> None:
        self._tasks: FairQueue[CpuTask] = FairQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: str, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` on one of the threads, in `owner`'s turn; its future."""
        task = CpuTask(owner, fn, args)
        self._tasks.put(task)
        return task.future

    def shutdown(self) -> None:
        """Cancel what has not started, let the running tasks end, and stop the threads."""
        with self._tasks.mutex:
            waiting = [task for tasks in self._tasks.by_owner.values() for task in tasks]
        for task in waiting:
            task.future.cancel()
        for _ in self._threads:
            self._tasks.put(CpuTask("", None))
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task.fn is None:
                return
            if not task.future.set_running_or_notify_cancel():
                continue
            try:
                task.future.set_result(task.fn(*task.args))
            except BaseException as exc:  # noqa: BLE001 (handed to whoever awaits the future)
                task.future.set_exception(exc)
