"""What travels on a model's queue and back: frozen job and result records."""

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from service.engine.detections import Detection
from service.methods import Method
from service.metrics.faithfulness import FaithfulnessScores


@dataclass(frozen=True)
class ExplainJob:
    """One request's work for the model's worker.

    Attributes:
        image: (3, H, W) normalised input tensor on the CPU.
        methods: methods to run; empty for a prediction only.
        classes: explicit class indices, or None to use the `top_k` best classes.
        top_k: number of best classes to explain when `classes` is None.
        threshold: with `classes` None, explain only those of the `top_k` best whose sigmoid reaches it (the
            labels a multilabel model predicts); None for classification.
        reference: (3, H, W) normalised second image of an embedding model's request: the target of every
            explanation is the cosine similarity of the two images' embeddings (`classes` is then one placeholder).
        concept: (K,) a stored concept vector of an embedding model, the target in place of a reference image's
            embedding.
        region: (H, W) 0/1 at the input size, the mask a segmentation model's request sent: every explanation sums
            its class's logits over these pixels instead of those predicted as the class.
        score_threshold: a detection model's: the score a box reaches to be a detection of the answer; `classes`
            are then detection indices (among those), and `top_k` the number of best detections explained.
        layer: target layer of the methods that use one.
        deadline: `time.monotonic()` after which the job is not executed.
        options: options of the methods that have parameters (instances of their `options_type`); a method
            whose type is not among them runs with its defaults.
        evaluate: also score each map's faithfulness (extra passes).
        metrics: Quantus's metrics that run through the model, (name, parameters), to score each map with (extra
            passes).
        extra_passes: forward passes beyond the shared ones (the plan's count); more than one chunk of them
            makes the job long work, run a chunk at a time between ordinary batches.
        on_progress: called on the worker thread with (passes done, passes in all) after each chunk of long work.
        cancel_requested: set to stop long work between two chunks (the client left, the job was deleted).
        future: resolved by the worker with a `JobResult` or a `ServiceError`.
        owner: who asked (the digest of the API key; '' when keys are off): queue places and long work are
            shared out by owner.
    """

    image: torch.Tensor
    methods: tuple[Method, ...]
    classes: tuple[int, ...] | None
    top_k: int
    layer: str | None
    deadline: float
    request_id: str
    options: tuple[object, ...] = ()
    threshold: float | None = None
    reference: torch.Tensor | None = field(default=None, compare=False, repr=False)
    concept: torch.Tensor | None = field(default=None, compare=False, repr=False)
    region: np.ndarray | None = field(default=None, compare=False, repr=False)
    score_threshold: float | None = None
    evaluate: bool = False
    metrics: tuple[tuple[str, dict[str, float | bool | str]], ...] = ()
    extra_passes: int = 0
    on_progress: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)
    cancel_requested: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    future: Future = field(default_factory=Future, compare=False, repr=False)
    owner: str = ""

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
    metric_values: dict[str, float] = field(default_factory=dict)
    """The job's `metrics` of this map, by name."""


@dataclass(frozen=True)
class JobResult:
    """Logits (K,) on the CPU, and one map per (method, class), methods outermost; an embedding model's job with a
    reference also has the cosine similarity its maps explain. A segmentation model's result has its (H, W)
    predicted classes at the input size in `mask` (uint8), and no logits (its logits per pixel are not kept); a
    detection model's has its detections (and no logits), and its maps' `class_index` is a detection's index."""

    logits: torch.Tensor
    maps: tuple[MapResult, ...]
    batch_size: int
    inference_ms: float
    similarity: float | None = None
    mask: torch.Tensor | None = None
    detections: tuple[Detection, ...] | None = None
