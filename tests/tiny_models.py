"""Tiny seeded models for tests: fast, deterministic, with known structure."""

import torch
from torch import nn

from model_store import LoadedModel, Preprocessing
from model_store.store import prepare_model

TINY_PREPROCESSING = Preprocessing(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class TinyGapNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU (the 'features' layer, 8 x 8 x 8 at 32 px) -> GAP -> linear (5 classes)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


class TinyFlatNet(nn.Module):
    """A head that is not GAP + linear: the feature map is flattened into the classifier, so CAM is undefined."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU())
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def seeded(module_type: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return module_type()


def prepare_tiny(name: str, module: nn.Module) -> LoadedModel:
    """A tiny module made warm like any served model: target layer `features`, classifier `fc`, on the CPU."""
    return prepare_model(
        name=name,
        source="test:" + type(module).__name__,
        module=module,
        preprocessing=TINY_PREPROCESSING,
        default_layer="features",
        classifier_layer="fc",
        device=torch.device("cpu"),
    )


def tiny_loaded(name: str = "tiny", module_type: type[nn.Module] = TinyGapNet, seed: int = 0) -> LoadedModel:
    return prepare_tiny(name, seeded(module_type, seed))


def tiny_vit_loaded(name: str = "tiny_vit", seed: int = 0) -> LoadedModel:
    """A seeded timm ViT at the tiny models' input size: 4 x 4 patches of 8 px and a class token, 2 blocks."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    module = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5)
    return prepare_model(
        name=name,
        source="test:VisionTransformer",
        module=module,
        preprocessing=TINY_PREPROCESSING,
        default_layer="blocks.1.norm1",
        classifier_layer="head",
        device=torch.device("cpu"),
    )
