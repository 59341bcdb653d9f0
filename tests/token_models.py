"""Seeded timm vision transformers served from a store directory, as a user would add them.

The weights are timm's own initialisation under a fixed seed (`pretrained=False`: nothing comes from a model
hub), saved to a state-dict file that a manifest names. The manifests say nothing about token layers, so the
store infers the reshape (ViT: tokens with one class token; Swin: channels-last).
"""

from pathlib import Path

import pytest
import torch

from model_store import LoadedModel, ModelStore

CPU = torch.device("cpu")

VIT = ("vit_tiny", "vit_tiny_patch16_224", "blocks.11.norm1", "head")
"""(name, timm architecture, default layer: the one of pytorch-grad-cam's ViT example, classifier layer)."""
SWIN = ("swin_tiny", "swin_tiny_patch4_window7_224", "norm", "head.fc")
"""Swin's last norm, whose global average pool feeds the linear classifier: CAM applies there."""


def write_timm_store(directory: Path, name: str, arch: str, default_layer: str, classifier: str, **extra: str) -> Path:
    """A store directory with one seeded timm model: `<name>.pth` and `<name>.toml`."""
    import timm

    torch.manual_seed(0)
    torch.save(timm.create_model(arch, pretrained=False).state_dict(), directory / f"{name}.pth")
    fields = {
        "name": f'"{name}"',
        "source": f'"timm:{arch}"',
        "weights": f'"{name}.pth"',
        "labels": '"imagenet"',
        "mean": "[0.5, 0.5, 0.5]",
        "std": "[0.5, 0.5, 0.5]",
        "default_layer": f'"{default_layer}"',
        "classifier_layer": f'"{classifier}"',
    } | extra
    (directory / f"{name}.toml").write_text("".join(f"{k} = {v}\n" for k, v in fields.items()))
    return directory


def load_timm(directory: Path, spec: tuple[str, str, str, str], **extra: str) -> LoadedModel:
    name = spec[0]
    return ModelStore.discover(write_timm_store(directory, *spec, **extra)).load(name, CPU)


@pytest.fixture(scope="session")
def seeded_vit(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_timm(tmp_path_factory.mktemp("vit"), VIT)


@pytest.fixture(scope="session")
def seeded_swin(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_timm(tmp_path_factory.mktemp("swin"), SWIN)
