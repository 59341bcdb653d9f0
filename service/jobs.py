"""What travels on a model's queue and back: frozen job and result records."""

from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from service.evaluation import FaithfulnessScores
from service.methods import Method


@dataclass(frozen=True)
class ExplainJob:
    """One request's work for the model's worker.

    Attributes:
        image: (3, H, W) normalised input tensor on the CPU.
        methods: methods to run; empty for a prediction only.
        classes: explicit class indices, or None to use the `top_k` best classes.
        top_k: number of best classes to explain when `classes` is None.
        layer: target layer of the methods that use one.
        deadline: `time.monotonic()` after which the job is not executed.
        options: options of the methods that have parameters (instances of their `options_type`); a method
            whose type is not among them runs with its defaults.
        evaluate: also score each map's faithfulness (extra passes).
        future: resolved by the worker with a `JobResult` or a `ServiceError`.
    """

    image: torch.Tensor
    methods: tuple[Method, ...]
    classes: tuple[int, ...] | None
    top_k: int
    layer: str | None
    deadline: float
    request_id: str
    options: tuple[object, ...] = ()
    evaluate: bool = False
    future: Future = field(default_factory=Future, compare=False, repr=False)

    def options_for(self, method: Method) -> object:
        """The options `method` runs with in this job."""
        chosen = [o for o in self.options if isinstance(o, method.options_type)]
        return chosen[0] if chosen else method.options_type()


@dataclass(frozen=True)
class MapResult:
    """A raw map on the CPU for one (method, class): (h, w) on the layer's grid or (H, W) at the input size."""

    method: str
    class_index: int
    layer: str | None
    map: torch.Tensor
    evaluation: FaithfulnessScores | None = None


@dataclass(frozen=True)
class JobResult:
    """Logits (K,) on the CPU, and one map per (method, class), methods outermost."""

    logits: torch.Tensor
    maps: tuple[MapResult, ...]
    batch_size: int
    inference_ms: float
