"""Layer methods whose map reduces weighted activations over channels, and their `eigen_smooth` and
`aug_smooth` options, as pytorch-grad-cam's.

`eigen_smooth` replaces the sum over channels of the weighted activations W ⊙ A (N, C, h, w) by their first
principal component (positions x channels, centred), which removes much of the noise. Here the component's sign
is chosen so that its largest magnitude is positive (pytorch-grad-cam leaves it to the SVD).

`aug_smooth` is test-time augmentation: the map of each of six augmented inputs (ttach's horizontal flip x
multiplication of the normalised input by 0.9, 1 and 1.1), each after ReLU scaled to [0, 1] as pytorch-grad-cam
scales it, flipped back where it was flipped, and averaged. Six extra passes (forward, backward to the layer)
per target.
"""

from abc import abstractmethod
from dataclasses import dataclass, replace

import torch

from service.methods.base import GRADIENT_PASS_COST, Method, MethodInputs
from service.methods.passes import Steps
from service.methods.projections import principal_projection

AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))
"""(horizontal flip, factor) of each augmented input of `aug_smooth`."""


@dataclass(frozen=True)
class ChannelMapOptions:
    eigen_smooth: bool = False
    """Reduce the weighted activations with their first principal component instead of their sum."""
    aug_smooth: bool = False
    """Average the maps of six augmented inputs (flips and brightness)."""


class ChannelMapMethod(Method):
    """A layer method whose map is `reduce(W ⊙ A)`; subclasses give `weighted_activations` and, unless it is
    ReLU(sum over channels), `reduce`. Its options have `eigen_smooth` and `aug_smooth` flags."""

    options_type = ChannelMapOptions
    pass_cost = GRADIENT_PASS_COST  # aug_smooth's passes go backward (to the layer)

    @abstractmethod
    def weighted_activations(self, inputs: MethodInputs) -> torch.Tensor:
        """W ⊙ A: (N, C, h, w)."""

    def reduce(self, weighted: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w): ReLU(sum_k W^k ⊙ A^k)."""
        return torch.relu(weighted.sum(dim=1))

    def compute(self, inputs: MethodInputs) -> torch.Tensor:
        """(N, C, h, w) -> (N, h, w); with `eigen_smooth`, the signed first principal component of W ⊙ A."""
        weighted = self.weighted_activations(inputs)
        if getattr(inputs.options, "eigen_smooth", False):  # NoOptions: the defaults
            return principal_projection(weighted)
        return self.reduce(weighted)

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: object, classes: int) -> int:
        return len(AUGMENTATIONS) * classes if getattr(options, "aug_smooth", False) else 0

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """`compute`, or with `aug_smooth` the mean of the scaled maps of the augmented inputs of each target."""
        if not getattr(inputs.options, "aug_smooth", False):
            return self.compute(inputs)
        runner, count = inputs.require("runner"), len(AUGMENTATIONS)
        flipped = torch.tensor([flip for flip, _ in AUGMENTATIONS])
        maps = []
        for row, class_index in enumerate(inputs.classes.tolist()):
            image = inputs.images[row]
            augmented = torch.stack([(image.flip(-1) if flip else image) * factor for flip, factor in AUGMENTATIONS])
            activations, gradients = yield from runner.layer_gradients(augmented, inputs.layer, class_index)
            of_row = replace(
                inputs,
                image_index=inputs.image_index[row].repeat(count),
                classes=inputs.classes[row].repeat(count),
                images=augmented,
                logits=inputs.logits[row].expand(count, -1),
                activations=activations,
                gradients=gradients,
                class_weights=None if inputs.class_weights is None else inputs.class_weights[row].expand(count, -1),
            )
            scaled = _scaled(torch.relu(self.compute(of_row)))
            scaled[flipped] = scaled[flipped].flip(-1)
            maps.append(scaled.mean(dim=0))
        return torch.stack(maps)


def _scaled(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map minus its minimum, over 1e-7 + its maximum: pytorch-grad-cam's `scale_cam_image`."""
    shifted = maps - maps.amin(dim=(1, 2), keepdim=True)
    return shifted / (1e-7 + shifted.amax(dim=(1, 2), keepdim=True))
