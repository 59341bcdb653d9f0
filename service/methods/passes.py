"""Extra batched passes for multi-pass methods, run in chunks of a bounded size on the model's device.

Long work must not hold the worker: each `PassRunner` method is a generator that runs one chunk of passes per
step and yields between chunks, so that the worker can serve other requests between two chunks. A method
consumes it with `logits = yield from runner.logits(inputs)`, and is itself a generator (`Steps`); whoever does
not need to pause drives the steps to the end with `run_to_end`.

Rule for every step generator: never yield inside a `with` block (grad mode, hooks): the block would stay open
while the worker does other work. Each chunk opens and closes its own blocks.
"""

from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from model_store.grids import LayerGrid
from model_store.hooks import forward_hooks
from service.methods.attention_lrp import attention_relevances
from service.methods.attention_maps import unfused_attention
from service.methods.rescale import rescale_rule

if TYPE_CHECKING:
    from model_store import LoadedModel

T = TypeVar("T")
Steps = Generator[None, None, T]
"""A computation cut into chunks: yields after each chunk, returns its result."""


def run_to_end(steps: Steps[T]) -> T:
    """Run every chunk of `steps` without pausing and return the result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def each_step_under(context: Callable[[], object], steps: Steps[T]) -> Steps[T]:
    """`steps`, with each chunk run inside a fresh `context()` (e.g. `torch.no_grad`), closed before yielding."""
    while True:
        with context():  # type: ignore[attr-defined]
            try:
                next(steps)
            except StopIteration as done:
                return done.value
        yield


class PassRunner:
    """Runs the warm model on many inputs for one method group, a chunk per step; counts the images it forwards.
    `grids`: the model's token and channels-last layers (`LoadedModel.layer_grids`), replaced as grids."""

    def __init__(self, module: nn.Module, chunk_size: int, grids: Mapping[str, LayerGrid] | None = None) -> None:
        self.module = module
        self.chunk_size = chunk_size
        self.grids = dict(grids or {})
        self.images_forwarded = 0

    def logits(self, inputs: torch.Tensor) -> Steps[torch.Tensor]:
        """(M, 3, H, W) -> (M, K), no gradients."""
        outputs = []
        for chunk in inputs.split(self.chunk_size):
            with torch.inference_mode():
                outputs.append(self.module(chunk))
            self.images_forwarded += len(chunk)
            yield
        return torch.cat(outputs)

    def logits_of(self, count: int, make_inputs: Callable[[torch.Tensor], torch.Tensor]) -> Steps[torch.Tensor]:
        """Logits (count, K) of `count` inputs made a chunk at a time: `make_inputs(rows)` gives the
        (len(rows), 3, H, W) inputs of the rows of a chunk, so that only one chunk of them is ever in memory."""
        outputs = []
        for rows in torch.arange(count).split(self.chunk_size):
            with torch.inference_mode():
                outputs.append(self.module(make_inputs(rows)))
            self.images_forwarded += len(rows)
            yield
        return torch.cat(outputs)

    def logits_with_layer_output(
        self,
        image: torch.Tensor,
        layer: str,
        count: int,
        make_output: Callable[[torch.Tensor], torch.Tensor],
    ) -> Steps[torch.Tensor]:
        """Logits (count, K) of `image` (3, H, W) with `layer`'s output replaced: for the rows `i` of a chunk,
        `make_output(i)` gives the (len(i), C, h, w) output to use instead."""
        outputs = []
        for rows in torch.arange(count, device=image.device).split(self.chunk_size):
            with torch.inference_mode():
                replacement = make_output(rows)
                with forward_hooks(self.module, [layer], lambda _name, _out, r=replacement: r, grids=self.grids):
                    outputs.append(self.module(image.expand(len(rows), *image.shape)))
            self.images_forwarded += len(rows)
            yield
        return torch.cat(outputs)

    def layer_gradients(
        self, inputs: torch.Tensor, layer: str, target: int | torch.Tensor
    ) -> Steps[tuple[torch.Tensor, torch.Tensor]]:
        """(M, 3, H, W) -> `layer`'s output A (M, C, h, w) and d score / d A (M, C, h, w), the score being the
        logit of class `target`, or the logits weighted by `target` (K,); the backward pass stops at the layer."""
        outputs = yield from self._layer_derivatives(inputs, layer, target, hessian=False)
        return outputs[0], outputs[1]

    def layer_hessian_products(
        self, inputs: torch.Tensor, layer: str, class_index: int
    ) -> Steps[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(M, 3, H, W) -> A, g = d logit_class / d A and the Hessian-vector product H A of the logit at A in the
        direction A (each (M, C, h, w)): a backward pass to the layer, then a second one through it."""
        outputs = yield from self._layer_derivatives(inputs, layer, class_index, hessian=True)
        return outputs[0], outputs[1], outputs[2]

    def _layer_derivatives(
        self, inputs: torch.Tensor, layer: str, target: int | torch.Tensor, hessian: bool
    ) -> Steps[list[torch.Tensor]]:
        results: list[list[torch.Tensor]] = [[], [], []]
        for chunk in inputs.split(self.chunk_size):
            captured: dict[str, torch.Tensor] = {}

            def capture(_name: str, output: torch.Tensor) -> torch.Tensor:
                captured["leaf"] = output.detach().requires_grad_()
                return captured["leaf"].clone()

            # A second backward pass goes through attention's composite kernel: the fused ones have no double
            # backward (a context of this pass, the model is not changed).
            kernels = sdpa_kernel([SDPBackend.MATH]) if hessian else nullcontext()
            with torch.enable_grad(), kernels, forward_hooks(self.module, [layer], capture, grids=self.grids):
                logits = self.module(chunk)
                score = logits[:, target].sum() if isinstance(target, int) else (logits @ target).sum()
                leaf = captured["leaf"]
                (gradient,) = torch.autograd.grad(score, leaf, create_graph=hessian)
                if hessian:  # a gradient that does not depend on A (a linear head after the layer): H = 0
                    product = None
                    if gradient.requires_grad:
                        (product,) = torch.autograd.grad(gradient, leaf, grad_outputs=leaf, allow_unused=True)
                    results[2].append(torch.zeros_like(leaf) if product is None else product.detach())
            results[0].append(leaf.detach())
            results[1].append(gradient.detach())
            self.images_forwarded += len(chunk)
            yield
        return [torch.cat(r) if r else torch.empty(0) for r in results]

    def output_gradients(
        self, inputs: torch.Tensor, layers: list[str], class_index: int
    ) -> Steps[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """(M, 3, H, W) -> d logit_class / d input (M, 3, H, W) and d logit_class / d output of each layer
        {layer: (M, ...)}, from one forward and one backward pass per chunk."""
        input_gradients: list[torch.Tensor] = []
        layer_gradients: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        for chunk in inputs.split(self.chunk_size):
            captured: dict[str, torch.Tensor] = {}

            def capture(name: str, output: torch.Tensor) -> torch.Tensor:
                captured[name] = output
                # Downstream layers get a copy: an in-place op after the layer must not change what was captured.
                return output.clone()

            with torch.enable_grad(), forward_hooks(self.module, layers, capture, grids=self.grids):
                leaf = chunk.detach().requires_grad_()
                logits = self.module(leaf)
                names = [layer for layer in layers if layer in captured]
                gradients = torch.autograd.grad(
                    logits[:, class_index].sum(), [leaf, *(captured[n] for n in names)], allow_unused=True
                )
            input_gradients.append(gradients[0])
            for name, gradient in zip(names, gradients[1:], strict=True):
                layer_gradients[name].append(torch.zeros_like(captured[name]) if gradient is None else gradient)
            self.images_forwarded += len(chunk)
            yield
        return torch.cat(input_gradients), {n: torch.cat(g) for n, g in layer_gradients.items() if g}

    def input_gradients(self, inputs: torch.Tensor, class_index: int) -> Steps[torch.Tensor]:
        """d logit_class / d input for (M, 3, H, W) inputs -> (M, 3, H, W)."""
        gradients = []
        for chunk in inputs.split(self.chunk_size):
            with torch.enable_grad():
                leaf = chunk.detach().requires_grad_()
                logits = self.module(leaf)
                (gradient,) = torch.autograd.grad(logits[:, class_index].sum(), leaf)
            gradients.append(gradient)
            self.images_forwarded += len(chunk)
            yield
        return torch.cat(gradients)

    def rescale_gradients(
        self, inputs: torch.Tensor, references: torch.Tensor, class_index: int
    ) -> Steps[torch.Tensor]:
        """DeepLIFT multipliers of logit_class for (M, 3, H, W) inputs against their (M, 3, H, W) references
        -> (M, 3, H, W): each chunk runs its inputs and references in one batch under the Rescale rule."""
        gradients = []
        pairs = max(1, self.chunk_size // 2)
        for chunk, reference in zip(inputs.split(pairs), references.split(pairs), strict=True):
            with torch.enable_grad(), rescale_rule(self.module):
                leaf = torch.cat([chunk, reference]).detach().requires_grad_()
                logits = self.module(leaf)
                (gradient,) = torch.autograd.grad(logits[: len(chunk), class_index].sum(), leaf)
            gradients.append(gradient[: len(chunk)])
            self.images_forwarded += 2 * len(chunk)
            yield
        return torch.cat(gradients)

    def attentions(
        self, inputs: torch.Tensor, layers: list[str], classes: torch.Tensor | None = None
    ) -> Steps[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """The attention probabilities of the named attention modules for (M, 3, H, W) inputs, [(M, heads, T, T)]
        in `layers`' order, and, given `classes` (M,), d logit_class / d probabilities of each row ([] without)."""
        probabilities: list[list[torch.Tensor]] = [[] for _ in layers]
        gradients: list[list[torch.Tensor]] = [[] for _ in layers]
        readers = [f"{layer}.attn_drop" for layer in layers]
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str, output: torch.Tensor) -> None:
            captured[name] = output

        wants_gradients = classes is not None
        for start in range(0, len(inputs), self.chunk_size):
            chunk = inputs[start : start + self.chunk_size]
            grad_mode = torch.enable_grad() if wants_gradients else torch.inference_mode()
            with grad_mode, unfused_attention(self.module, layers), forward_hooks(self.module, readers, capture):
                # The parameters are frozen: the graph to the probabilities starts at an input that requires grad.
                logits = self.module(chunk.detach().requires_grad_(wants_gradients))
                chunk_probabilities = [captured[name] for name in readers]
                if classes is not None:
                    score = logits.gather(1, classes[start : start + len(chunk), None]).sum()
                    for i, gradient in enumerate(torch.autograd.grad(score, chunk_probabilities)):
                        gradients[i].append(gradient)
            for i, p in enumerate(chunk_probabilities):
                probabilities[i].append(p.detach())
            self.images_forwarded += len(chunk)
            yield
        return [torch.cat(p) for p in probabilities], [torch.cat(g) for g in gradients if g]

    def attention_relevances(
        self, inputs: torch.Tensor, layers: list[str], classes: torch.Tensor
    ) -> Steps[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """For (M, 3, H, W) inputs and their (M,) classes, per attention module in `layers` (M, heads, T, T): the
        gradient of logit_class at the attention probabilities, and their relevance for the class under Chefer
        et al.'s rules (`service.methods.attention_lrp`)."""
        gradients: list[list[torch.Tensor]] = [[] for _ in layers]
        relevances: list[list[torch.Tensor]] = [[] for _ in layers]
        for chunk, chunk_classes in zip(inputs.split(self.chunk_size), classes.split(self.chunk_size), strict=True):
            with torch.enable_grad(), unfused_attention(self.module, layers):
                chunk_gradients, chunk_relevances = attention_relevances(self.module, chunk, chunk_classes)
            for i in range(len(layers)):
                gradients[i].append(chunk_gradients[i])
                relevances[i].append(chunk_relevances[i])
            self.images_forwarded += len(chunk)
            yield
        return [torch.cat(g) for g in gradients], [torch.cat(r) for r in relevances]

    def relevances(
        self, inputs: torch.Tensor, class_index: int, model: nn.Module, rules: Callable[[], ContextManager[None]]
    ) -> Steps[torch.Tensor]:
        """LRP relevances of logit_class at the input, (M, 3, H, W) -> (M, 3, H, W), on `model` (the served
        model's LRP copy) inside `rules()`: the relevance started at the logit goes back to the input layer by
        layer (`service.methods.lrp_rules`)."""
        relevances = []
        for chunk in inputs.split(self.chunk_size):
            with torch.enable_grad(), rules():
                leaf = chunk.detach().requires_grad_()
                scores = model(leaf + 0)[:, class_index]  # + 0: the first layer's input is not the leaf
                (normalized,) = torch.autograd.grad(scores.sum(), leaf)
            relevances.append(normalized * scores.detach()[:, None, None, None])
            self.images_forwarded += len(chunk)
            yield
        return torch.cat(relevances)


def chunk_size_for(model: "LoadedModel", target_ms: float) -> int:
    """Images per chunk so that a chunk of forward passes takes about `target_ms` on the model's device, from the
    time per image measured when the model was warmed. Between 1 and 256."""
    return max(1, min(256, round(target_ms / max(model.forward_ms_per_image, 1e-6))))
