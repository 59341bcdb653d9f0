"""The batch size a model's worker forms: the one its warm-up measured fastest, corrected while it serves.

The warm-up times the plain forward pass at batch 1..16 (`LoadedModel.preferred_batch_size`) in a few seconds,
and a burst of load from the machine's neighbours just then can make the fastest size look slow: on the 2-core
machine some starts chose batches of 1 or 2 instead of 4 and served a quarter fewer requests for as long as
they ran. So the worker keeps measuring while it serves. Now and then, while requests come together (batches of
two or more), it runs a trial of a neighbouring size on the ladder 1, 2, 4, ... up to the limit:
`TRIAL_BLOCKS` blocks of `BLOCK_BATCHES` batches, the neighbour's and the current size's in turn, and it moves
to the neighbour when that served clearly more images per second in every round (a pair of blocks), so that a
burst of load on the machine during one block does not move it.

A size is judged by the worker's whole cycle, from the end of one batch to the end of the next, waiting for
the queue included (the chunks of long work run between batches are not): on two cores a batch of 8 is served
faster per image than two of 4, but while it runs the CPU pool decodes less and the next batch waits longer for
its images. The first batch of each block is not counted: it still has the queue that the other size left.

A move is followed by a trial in the same direction (it climbs towards the best size); a trial that fails
turns the direction and doubles the number of batches to the next trial (from `TRIAL_GAP` to `MAX_TRIAL_GAP`),
so that a worker at its best size forms about one batch in twenty at another size. Where the load never fills
the limit (16 clients in a closed loop form batches of about 8 at a limit of 16) the sizes above the batches
formed serve alike, and the size stays.
"""

from dataclasses import dataclass, field

BLOCK_BATCHES = 5
TRIAL_BLOCKS = 4
TRIAL_GAP = 25  # batches of two or more (or full ones) before the first trial, and after a move
MAX_TRIAL_GAP = 200
IDLE_S = 5.0  # far longer than the gaps between the batches of a closed loop (its clients' encode and decode)


def clearly_faster(seconds_per_image: float, other_seconds_per_image: float) -> bool:
    """Whether a worker's seconds per image beat another's by more than a trial's noise (10%)."""
    return seconds_per_image < 0.9 * other_seconds_per_image


@dataclass
class _Trial:
    """Blocks of batches at the neighbour's size and the current one in turn; each block's images and seconds."""

    neighbour: int
    current: int
    batches: int = 0
    images: list[int] = field(default_factory=lambda: [0] * TRIAL_BLOCKS)
    seconds: list[float] = field(default_factory=lambda: [0.0] * TRIAL_BLOCKS)

    @property
    def size_now(self) -> int:
        return self.current if self.batches // BLOCK_BATCHES % 2 else self.neighbour

    @property
    def done(self) -> bool:
        return self.batches >= TRIAL_BLOCKS * BLOCK_BATCHES

    def add(self, images: int, cycle_s: float) -> None:
        block = self.batches // BLOCK_BATCHES
        if self.batches % BLOCK_BATCHES:  # the block's first batch still had the previous block's queue
            self.images[block] += images
            self.seconds[block] += cycle_s
        self.batches += 1

    def neighbour_won(self) -> bool:
        """Whether the neighbour was clearly faster than the current size in every round (a pair of blocks)."""
        per_image = [seconds / max(images, 1) for seconds, images in zip(self.seconds, self.images, strict=True)]
        return all(clearly_faster(per_image[i], per_image[i + 1]) for i in range(0, TRIAL_BLOCKS, 2))


class BatchSizer:
    """The size limit of each next batch (`next_limit`), from the time each batch took (`record`)."""

    def __init__(self, start: int, limit: int) -> None:
        self.size = min(start, limit)
        """The batch size formed outside trials."""
        self.ladder = sorted({min(2**power, limit) for power in range(limit.bit_length() + 1)} | {self.size})
        self._direction = 1  # +1: try the next size up; -1: down
        self._gap = TRIAL_GAP
        self._batches_together = 0
        self._trial: _Trial | None = None

    def next_limit(self) -> int:
        """The most jobs the next batch may take: the current size, or during a trial that of the block."""
        return self.size if self._trial is None else self._trial.size_now

    def record(self, limit: int, images: int, cycle_s: float) -> bool:
        """Note a batch formed with `next_limit() == limit` that held `images`, `cycle_s` seconds after the
        previous one ended; returns whether the size changed."""
        trial = self._trial
        if trial is None:
            if images >= min(limit, 2):
                self._batches_together += 1
                if self._batches_together >= self._gap:
                    self._start_trial()
            return False
        trial.add(images, cycle_s)
        if not trial.done:
            return False
        moved = trial.neighbour_won()
        if moved:
            self.size = trial.neighbour
        self._end_trial(moved)
        return moved

    def idle(self, idle_s: float) -> None:
        """Note that the queue has been empty for `idle_s` seconds since the last batch: after `IDLE_S` the load
        has dropped, and a trial under way is dropped (its blocks would be timed against different loads)."""
        if self._trial is not None and idle_s >= IDLE_S:
            self._trial = None
            self._batches_together = 0

    def _start_trial(self) -> None:
        index = self.ladder.index(self.size)
        for direction in (self._direction, -self._direction):
            if 0 <= index + direction < len(self.ladder):
                self._direction = direction
                neighbour = self.ladder[index + direction]
                self._trial = _Trial(neighbour, self.size)
                return
        self._batches_together = 0  # a single size: nothing to try

    def _end_trial(self, moved: bool) -> None:
        self._trial = None
        self._batches_together = 0
        if moved:
            self._gap = TRIAL_GAP
        else:
            self._direction = -self._direction
            self._gap = min(2 * self._gap, MAX_TRIAL_GAP)
