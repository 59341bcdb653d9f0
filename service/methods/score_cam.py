"""Score-CAM (Wang et al., 2020, "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks")."""

import torch
import torch.nn.functional as F

from service.methods.base import MethodInputs, MultiPassMethod, Need, NoOptions, weighted_sum
from service.methods.passes import Steps

EPS = 1e-8


class ScoreCAM(MultiPassMethod):
    """w^c = softmax_k(S_c(X ∘ H^k)), H^k = min-max normalised upsampled A^k;  L^c = ReLU(sum_k w_k^c A^k).

    One forward pass per channel of the layer for each image (shared by all its classes), batched in chunks;
    the channel scores are the class logits, normalised with a softmax over channels (as pytorch-grad-cam).
    """

    name = "score_cam"
    title = "Score-CAM"
    paper = "Wang et al. 2020, Score-CAM (CVPR workshops)"
    raw_map = "ReLU(sum_k w_k A^k), w = softmax over channels of logit_c(input * normalised upsampled A^k)"
    aliases = ("scorecam", "ScoreCAM")
    needs = frozenset({Need.ACTIVATIONS, Need.EXTRA_PASSES})
    reads_layer_only = True
    cost = "the shared forward pass + one forward pass per channel of the layer, per image"
    sanity_check = True

    def extra_passes(self, channels: int, input_size: tuple[int, int], options: NoOptions, classes: int) -> int:
        return channels

    def compute_steps(self, inputs: MethodInputs) -> Steps[torch.Tensor]:
        """(N, C, h, w) activations, (N, 3, H, W) images -> (N, h, w)."""
        activations, runner = inputs.require("activations"), inputs.require("runner")
        weights = torch.empty(activations.shape[:2], device=activations.device)
        for rows in inputs.rows_by_image():
            first = rows[0]
            masks = F.interpolate(
                activations[first][None], size=inputs.images.shape[-2:], mode="bilinear", align_corners=True
            )[0]
            flat = masks.flatten(1)
            low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
            masks = (masks - low) / (high - low + EPS)
            logits = yield from runner.logits(inputs.images[first][None] * masks[:, None])  # (C, K)
            weights[rows] = torch.softmax(logits[:, inputs.classes[rows]].T, dim=1)
        return torch.relu(weighted_sum(weights, activations))
