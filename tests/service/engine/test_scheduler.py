"""Long work taking turns: `LongWork` round robin with plain tasks, and `ExplainTask` a chunk at a time."""

import time

import pytest
import torch

from service.core.errors import Cancelled, DeadlineExceeded, ServiceUnavailable
from service.engine.explainer import run_batch
from service.engine.scheduler import ExplainTask, LongTask, LongWork
from service.engine.work import ExplainJob
from service.methods import METHODS
from tests.tiny_models import tiny_loaded


class Countdown(LongTask):
    def __init__(self, name: str, chunks: int, log: list[str]) -> None:
        self.name, self.left, self.log = name, chunks, log
        self.abandoned = None

    def step(self) -> bool:
        self.log.append(self.name)
        self.left -= 1
        return self.left == 0

    def abandon(self, error) -> None:
        self.abandoned = error


def test_tasks_take_one_chunk_each_in_turn():
    log: list[str] = []
    work = LongWork()
    work.add(Countdown("a", 3, log))
    work.add(Countdown("b", 1, log))
    work.run_one_chunk()
    work.add(Countdown("c", 2, log))
    while work.pending:
        work.run_one_chunk()
    assert log == ["a", "b", "a", "c", "a", "c"]
    assert not work.pending


def test_abandoning_ends_every_task_with_the_error():
    work, log = LongWork(), []
    tasks = [Countdown(name, 5, log) for name in "xy"]
    for task in tasks:
        work.add(task)
    work.run_one_chunk()
    error = ServiceUnavailable("stopping", code="worker_stopped")
    work.abandon_all(error)
    assert [t.abandoned for t in tasks] == [error, error] and not work.pending


def score_cam_job(deadline_s: float = 60) -> ExplainJob:
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return ExplainJob(
        image, (METHODS["score_cam"],), (1,), 1, "features", time.monotonic() + deadline_s, "long", extra_passes=8
    )


def test_an_explain_task_runs_a_chunk_per_step_reports_progress_and_gives_the_batch_answer():
    model = tiny_loaded()
    job = score_cam_job()
    progress: list[tuple[int, int]] = []
    job = ExplainJob(**{**vars(job), "on_progress": lambda done, total: progress.append((done, total))})
    task = ExplainTask(model, job, chunk_size=3, evaluation_steps=16)
    steps = 1
    while not task.step():
        steps += 1
    assert steps == 4  # chunks of 3, 3, 2 images, then the answer
    assert progress == [(0, 8), (3, 8), (6, 8), (8, 8), (8, 8)]
    (alone,) = run_batch(model, [job])
    torch.testing.assert_close(job.future.result().maps[0].map, alone.maps[0].map)


@pytest.mark.parametrize("stop", ["cancel", "deadline"])
def test_a_cancelled_or_late_task_runs_no_further_chunk(stop):
    model = tiny_loaded()
    job = score_cam_job()
    task = ExplainTask(model, job, chunk_size=2, evaluation_steps=16)
    assert task.step() is False
    before = task.runner.images_forwarded
    if stop == "cancel":
        job.cancel_requested.set()
    else:
        object.__setattr__(job, "deadline", time.monotonic() - 1)
    assert task.step() is True
    assert task.runner.images_forwarded == before
    with pytest.raises(Cancelled if stop == "cancel" else DeadlineExceeded):
        job.future.result()


def test_the_chunk_size_follows_the_target_duration_within_its_bounds():
    from service.methods.passes import chunk_size_for

    model = tiny_loaded()
    assert chunk_size_for(model, target_ms=1e9) == 256
    assert chunk_size_for(model, target_ms=1e-9) == 1


def test_owners_take_turns_before_their_tasks_do():
    """A key with three long tasks gets no more turns than a key with one."""
    log: list[str] = []
    work = LongWork()
    for name in ("a1", "a2", "a3"):
        task = Countdown(name, 2, log)
        task.owner = "A"
        work.add(task)
    theirs = Countdown("b", 3, log)
    theirs.owner = "B"
    work.add(theirs)
    while work.pending:
        work.run_one_chunk()
    assert log == ["a1", "b", "a2", "b", "a3", "b", "a1", "a2", "a3"]
