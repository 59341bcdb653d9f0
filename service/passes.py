"""Extra batched passes for multi-pass methods, run in chunks of a bounded size on the model's device."""

from collections.abc import Callable

import torch
from torch import nn

from model_store.hooks import forward_hooks


class PassRunner:
    """Runs the warm model on many inputs for one method group; counts the images it forwards."""

    def __init__(self, module: nn.Module, chunk_size: int) -> None:
        self.module = module
        self.chunk_size = chunk_size
        self.images_forwarded = 0

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) -> (M, K), no gradients."""
        outputs = []
        with torch.inference_mode():
            for chunk in inputs.split(self.chunk_size):
                outputs.append(self.module(chunk))
                self.images_forwarded += len(chunk)
        return torch.cat(outputs)

    def logits_with_layer_output(
        self,
        image: torch.Tensor,
        layer: str,
        count: int,
        make_output: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Logits (count, K) of `image` (3, H, W) with `layer`'s output replaced: for the rows `i` of a chunk,
        `make_output(i)` gives the (len(i), C, h, w) output to use instead."""
        outputs = []
        with torch.inference_mode():
            for rows in torch.arange(count, device=image.device).split(self.chunk_size):
                replacement = make_output(rows)
                with forward_hooks(self.module, [layer], lambda _name, _out, r=replacement: r):
                    outputs.append(self.module(image.expand(len(rows), *image.shape)))
                self.images_forwarded += len(rows)
        return torch.cat(outputs)

    def input_gradients(self, inputs: torch.Tensor, class_index: int) -> torch.Tensor:
        """d logit_class / d input for (M, 3, H, W) inputs -> (M, 3, H, W)."""
        gradients = []
        for chunk in inputs.split(self.chunk_size):
            with torch.enable_grad():
                leaf = chunk.detach().requires_grad_()
                logits = self.module(leaf)
                (gradient,) = torch.autograd.grad(logits[:, class_index].sum(), leaf)
            gradients.append(gradient)
            self.images_forwarded += len(chunk)
        return torch.cat(gradients)
