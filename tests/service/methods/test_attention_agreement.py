"""The transformer-native methods agree with their authors' reference computations on a seeded ViT-Tiny.

The references (`tests/service/methods/chefer_vit.py`) run on their own ViT, Chefer et al.'s relevance-carrying
re-implementation loaded with the same weights: the attention they read is theirs, not what the service's
hooks saw. Same image, same classes; the raw 14 x 14 maps are compared (Pearson >= 0.99, and closer: the
operations are the same, in another order).
"""

import numpy as np
import pytest
import torch

from service.methods.attention_rollout import AttentionRolloutOptions
from tests.service.methods import chefer_vit
from tests.service.methods.test_reference_agreement import our_raw_maps, pearson
from tests.token_models import seeded_vit  # noqa: F401  (fixture)

THRESHOLD = 0.99
CLASSES = [3, 7]


@pytest.fixture(scope="module")
def reference(seeded_vit):
    return chefer_vit.reference_vit(seeded_vit.module.state_dict(), depth=12, num_heads=3)


@pytest.fixture(scope="module")
def photos(seeded_vit, cat_photo) -> torch.Tensor:
    return torch.stack([seeded_vit.preprocessing.to_tensor(image) for image in (cat_photo, cat_photo.rotate(90))])


def agree(ours: torch.Tensor, theirs: torch.Tensor, label: str) -> None:
    theirs = theirs.detach().reshape(14, 14)
    assert theirs.std() > 0, "reference map is constant; the comparison would mean nothing"
    agreement = pearson(ours.numpy(), theirs.numpy())
    print(f"{label}: pearson {agreement:.6f}")
    assert agreement >= THRESHOLD, (label, agreement)
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-5 * float(theirs.abs().max()))


def test_the_reference_vit_computes_the_served_model_s_logits(seeded_vit, reference, photos):
    torch.testing.assert_close(reference(photos), seeded_vit.module(photos), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("method", "reference_method"),
    [
        ("transformer_attribution", chefer_vit.transformer_attribution),
        ("generic_attention", chefer_vit.generic_attention),
    ],
)
def test_chefer_et_al_s_methods_agree_with_their_code(seeded_vit, reference, photos, method, reference_method):
    ours = our_raw_maps(seeded_vit, method, photos, CLASSES)
    for i, class_index in enumerate(CLASSES):
        agree(ours[i], reference_method(reference, photos[i : i + 1], class_index), f"{method} target {i}")
    assert (ours[0] - ours[1]).abs().max() > 0, "two images and classes, one map"


def reference_attentions(reference, x: torch.Tensor) -> list[torch.Tensor]:
    reference(x)
    return [block.attn.attn.detach() for block in reference.blocks]


@pytest.mark.parametrize(("head_fusion", "discard_ratio"), [("mean", 0.0), ("max", 0.9), ("min", 0.5)])
def test_attention_rollout_agrees_with_vit_explain(seeded_vit, reference, photos, head_fusion, discard_ratio):
    options = AttentionRolloutOptions(head_fusion=head_fusion, discard_ratio=discard_ratio)
    ours = our_raw_maps(seeded_vit, "attention_rollout", photos, CLASSES, options=(options,))
    for i in range(len(photos)):
        theirs = chefer_vit.vit_explain_rollout(
            reference_attentions(reference, photos[i : i + 1]), discard_ratio, head_fusion
        )
        agree(ours[i], theirs, f"attention_rollout {head_fusion} {discard_ratio} image {i}")


def test_attention_rollout_agrees_with_abnar_s_joint_attention(seeded_vit, reference, photos):
    ours = our_raw_maps(seeded_vit, "attention_rollout", photos[:1], CLASSES[:1])[0]
    heads_averaged = np.stack([a[0].mean(dim=0).double().numpy() for a in reference_attentions(reference, photos[:1])])
    theirs = chefer_vit.compute_joint_attention(heads_averaged)[-1][0, 1:]
    agree(ours, torch.from_numpy(theirs).float(), "attention_rollout vs compute_joint_attention")


def test_attention_rollout_is_one_map_per_image_whatever_the_class(seeded_vit, photos):
    maps = our_raw_maps(seeded_vit, "attention_rollout", photos[:1].expand(2, -1, -1, -1), CLASSES)
    torch.testing.assert_close(maps[0], maps[1])


def test_the_served_model_keeps_its_fused_attention(seeded_vit, photos):
    fused = [block.attn.fused_attn for block in seeded_vit.module.blocks]
    for method in ("attention_rollout", "generic_attention", "transformer_attribution"):
        our_raw_maps(seeded_vit, method, photos[:1], CLASSES[:1])
    assert [block.attn.fused_attn for block in seeded_vit.module.blocks] == fused
