"""Activation maximization, one batched optimisation step at a time.

A `Visualization` holds one run's state: its image parameters, their Adam state, its random generator, the steps
done and the last objective value. `step_together` advances any number of visualizations of one model by one
step with a single forward and backward pass: every image is rendered, transformed with its own random draw,
resized to the model's input size and normalised, the rows go through the model as one batch, each row's own
objective is read, and one `torch.autograd.grad` of the sum gives every visualization the gradient of its own
objective (rows do not interact in an eval-mode model). The model's weights are fixed and never receive
gradients; hooks exist only inside `forward_hooks`.

All torch work runs in the calling thread (the model's worker); nothing here starts a thread.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from model_store import LoadedModel
from service.core.errors import InvalidParameter
from service.visualization.objectives import Objective, evaluate_objectives, validate_objective
from service.visualization.parameterization import ImageParameterization
from service.visualization.png import to_rgb_uint8
from service.visualization.transforms import draw_transform, to_model_input, transform_batch

MIN_SIDE = 16
MAX_SIDE = 1024
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class VisualizationSpec:
    """What to visualize and how.

    Attributes:
        objective: what to maximise.
        steps: optimisation steps (Adam).
        size: (height, width) of the image; None for the model's input size.
        seed: seeds the initial parameters and every random transformation.
        lr: Adam's learning rate.
        fourier: parameterize the image by its Fourier spectrum (else by its pixels).
        decorrelate: parameterize colour in ImageNet's decorrelated colour space (else in RGB).
        transforms: random pad, jitter, scale and rotation before each step (else none).
    """

    objective: Objective
    steps: int = 256
    size: tuple[int, int] | None = None
    seed: int = 0
    lr: float = 0.05
    fourier: bool = True
    decorrelate: bool = True
    transforms: bool = True


def validate_spec(spec: VisualizationSpec, model: LoadedModel) -> VisualizationSpec:
    """Check `spec` against `model`; return it with the size and a neuron's position filled in.

    Raises:
        UnknownClass, UnknownLayer, MethodNotApplicable, InvalidParameter.
    """
    objective = validate_objective(spec.objective, model)
    if spec.steps < 1:
        raise InvalidParameter(f"steps must be at least 1, got {spec.steps}")
    size = spec.size or model.preprocessing.input_size
    if len(size) != 2 or not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise InvalidParameter(f"size must be (height, width), each {MIN_SIDE}..{MAX_SIDE} pixels; got {size}")
    if not 0 <= spec.seed <= MAX_SEED:
        raise InvalidParameter(f"seed must be in 0..{MAX_SEED}, got {spec.seed}")
    if not (math.isfinite(spec.lr) and spec.lr > 0):
        raise InvalidParameter(f"lr must be a positive finite number, got {spec.lr}")
    return replace(spec, objective=objective, size=(int(size[0]), int(size[1])))


class Visualization:
    """One activation-maximization run on one model; advanced by `step_together`."""

    def __init__(self, spec: VisualizationSpec, model: LoadedModel) -> None:
        """Raises the errors of `validate_spec`."""
        self.spec = validate_spec(spec, model)
        self.model = model
        height, width = self.spec.size or model.preprocessing.input_size
        self.generator = torch.Generator().manual_seed(self.spec.seed)
        self.parameterization = ImageParameterization(
            height, width, fourier=self.spec.fourier, decorrelate=self.spec.decorrelate
        )
        self.parameters = self.parameterization.initial(self.generator, model.device)
        self.optimizer = torch.optim.Adam([self.parameters], lr=self.spec.lr)
        self.steps_done = 0
        self.last_objective: float | None = None

    @property
    def done(self) -> bool:
        return self.steps_done >= self.spec.steps

    def image(self) -> torch.Tensor:
        """The current image: (3, h, w) float in [0, 1] on the CPU."""
        with torch.no_grad():
            return self.parameterization.render(self.parameters).cpu()

    def _apply(self, gradient: torch.Tensor, objective: float) -> None:
        """One Adam step with the gradient of the loss (minus the objective) w.r.t. this run's parameters."""
        self.parameters.grad = gradient
        self.optimizer.step()
        self.parameters.grad = None
        self.steps_done += 1
        self.last_objective = objective


def step_together(model: LoadedModel, visualizations: Sequence[Visualization]) -> None:
    """One optimisation step for each of `visualizations`, in one batched forward and backward pass.

    Raises:
        ValueError: a visualization belongs to another model.
    """
    if not visualizations:
        return
    if any(vis.model is not model for vis in visualizations):
        raise ValueError(f"every visualization stepped with model '{model.name}' must have been made for it")
    with torch.enable_grad():
        inputs = _model_inputs(model, visualizations)
        values, _ = evaluate_objectives(model, [vis.spec.objective for vis in visualizations], inputs)
        gradients = torch.autograd.grad(-values.sum(), [vis.parameters for vis in visualizations])
    for vis, gradient, value in zip(visualizations, gradients, values.tolist(), strict=True):
        vis._apply(gradient, value)


def _model_inputs(model: LoadedModel, visualizations: Sequence[Visualization]) -> torch.Tensor:
    """Render, transform (each by its own draw), resize and normalise: (k, 3, H, W), rows in the given order.

    Images with the same canvas (size and transform switch) are transformed and resized as one batch.
    """
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for row, vis in enumerate(visualizations):
        height, width = vis.parameterization.height, vis.parameterization.width
        groups.setdefault((height, width, vis.spec.transforms), []).append(row)
    rows: list[torch.Tensor] = [torch.empty(0)] * len(visualizations)
    for (_, _, transforms), members in groups.items():
        images = torch.stack([visualizations[i].parameterization.render(visualizations[i].parameters) for i in members])
        if transforms:
            images = transform_batch(images, [draw_transform(visualizations[i].generator) for i in members])
        for i, row in zip(members, to_model_input(images, model.preprocessing), strict=True):
            rows[i] = row
    return torch.stack(rows)


@dataclass(frozen=True)
class Description:
    """What the model makes of a finished image: the objective's value and the (K,) logits on the CPU."""

    objective: float
    logits: np.ndarray


def describe(model: LoadedModel, vis: Visualization) -> Description:
    """The objective and the logits for `vis`'s image fed as a posted image is: quantised to 8 bits (as in
    its PNG), resized to the input size with the model's interpolation and normalised; no random transform."""
    picture = Image.fromarray(to_rgb_uint8(vis.image().numpy()))
    inputs = model.preprocessing.to_tensor(picture)[None].to(model.device)
    with torch.inference_mode():
        values, logits = evaluate_objectives(model, [vis.spec.objective], inputs)
    # A detection model's output is boxes: no logits to describe the image with.
    kept = logits[0].cpu().numpy() if isinstance(logits, torch.Tensor) else np.empty(0, dtype=np.float32)
    return Description(objective=float(values[0]), logits=kept)
