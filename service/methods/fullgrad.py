"""FullGrad (Srinivas & Fleuret, 2019, "Full-Gradient Representation for Neural Network Visualization"), as
pytorch-grad-cam's `FullGrad`."""

import torch
import torch.nn.functional as F
from torch import nn

from service.methods.base import GRADIENT_PASS_COST, MethodInputs, MultiPassMethod, Need
from service.methods.passes import Steps

EPS = 1e-7


def bias_layers(module: nn.Module) -> dict[str, torch.Tensor]:
    """{name: (C,) bias} of every Conv2d and BatchNorm2d with a bias; a BatchNorm's bias is the one it adds in eval
    mode, b - mu w / sqrt(var + eps) (the paper's code, idiap/fullgrad-saliency)."""
    biases = {}
    for name, layer in module.named_modules():
        if type(layer) is nn.Conv2d and layer.bias is not None:
            biases[name] = layer.bias.detach()
        elif type(layer) is nn.BatchNorm2d and layer.bias is not None:
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            biases[name] = (layer.bias - layer.running_mean * scale).detach()
    return biases


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """(C, h, w) -> (C, h, w), each map shifted to 0 and divided by its maximum (+1e-7), as the library's
    `scale_cam_image`."""
    shifted = maps - maps.flatten(1).amin(dim=1)[:, None, None]
    return shifted / (shifted.flatten(1).amax(dim=1)[:, None, None] + EPS)


class FullGrad(MultiPassMethod):
    """S = sum_c s(|x ⊙ dy/dx|)_c + sum_layers sum_k U(s(|b_k dy/dz_k|)), z_k a biased layer's output channel,
    s the per-map min-max scaling and U bilinear upsampling to the input (the paper's eq. 6 with psi = |.| and
    pytorch-grad-cam's per-channel scaling).

    Every Conv2d and BatchNorm2d with a bias counts (pytorch-grad-cam's choice of layers); the `layer` parameter
    does not apply. One forward and backward pass to the input per class.
    """

    name = "fullgrad"
    title = "FullGrad"
    paper = "Srinivas & Fleuret 2019, Full-Gradient Representation for Neural Network Visualization (NeurIPS)"
    raw_map = "sum_c scaled |x dS/dx| + sum over biased conv/BN layers and channels of upsampled scaled |b dS/dz|"
    aliases = ("FullGrad", "full_grad")
    needs = frozenset({Need.EXTRA_PASSES})
    cost = "one forward + backward pass to the input per class (beside the shared pass)"
    pass_cost = GRADIENT_PASS_COST
    sanity_check = True
    input_resolution = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: object, classes: int) -> int:
        return classes

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, 3, H, W) images -> (N, H, W)."""
        runner = inputs.require("runner")
        biases = bias_layers(runner.module)
        size = inputs.images.shape[-2:]
        maps = []
        for image, class_index in zip(inputs.images, inputs.classes.tolist(), strict=True):
            input_gradient, gradients = yield from runner.output_gradients(image[None], list(biases), class_index)
            total = scaled((image * input_gradient[0]).abs()).sum(dim=0)
            for name, gradient in gradients.items():
                if gradient.ndim != 4:
                    continue
                layer_map = scaled((biases[name][:, None, None] * gradient[0]).abs()).sum(dim=0)
                upsampled = F.interpolate(layer_map[None, None], size=size, mode="bilinear", align_corners=False)
                total = total + upsampled[0, 0]
            maps.append(total)
        return torch.stack(maps)
