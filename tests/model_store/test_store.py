"""Manifests, loaders and the store: models from a store directory, and loading that fails fast."""

from pathlib import Path

import pytest
import torch
import torchvision

from model_store import ModelLoadError, ModelStore, read_manifest
from model_store.labels import AmbiguousLabel, LabelSet, UnknownLabel
from tests.tiny_models import TinyGapNet, seeded

CPU = torch.device("cpu")


def write_resnet_store(tmp_path: Path, **overrides: str) -> Path:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "r18.pth")
    (tmp_path / "labels.txt").write_text("cat\ndog\ncrane, bird\n")
    fields = {
        "name": '"r18"',
        "source": '"torchvision:resnet18"',
        "weights": '"r18.pth"',
        "labels": '"labels.txt"',
        "num_classes": "3",
        "input_size": "[64, 64]",
        "default_layer": '"layer4"',
        "classifier_layer": '"fc"',
    } | overrides
    (tmp_path / "r18.toml").write_text("".join(f"{k} = {v}\n" for k, v in fields.items()))
    return tmp_path


def test_store_directory_adds_a_torchvision_model(tmp_path):
    store = ModelStore.discover(write_resnet_store(tmp_path))
    assert {"efficientnet_lite0", "r18"} <= set(store.manifests)
    model = store.load("r18", CPU)
    assert model.layer_shapes["layer4"] == (512, 2, 2)
    assert model.cam_layer == "layer4"
    assert model.labels.find("Dog") == 1
    assert all(not p.requires_grad for p in model.module.parameters())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"weights": '"missing.pth"'}, "weights file not found"),
        ({"default_layer": '"layer9"'}, "default_layer 'layer9'"),
        ({"classifier_layer": '"layer4"'}, "not an nn.Linear"),
        ({"num_classes": "4"}, "do not match"),
        ({"source": '"torchvision:resnet999"'}, "unknown torchvision model"),
        ({"source": '"hub:resnet18"'}, "source must be one of"),
        (
            {"task": '"keypoints"'},
            r"task must be one of \['classification', 'multilabel', 'embedding', 'segmentation', 'detection'\]",
        ),
        ({"colour": '"red"'}, "unknown keys"),
        ({"labels": '"missing.txt"'}, "cannot read labels"),
    ],
)
def test_loading_fails_fast_with_a_clear_message(tmp_path, override, message):
    with pytest.raises(ModelLoadError, match=message):
        ModelStore.discover(write_resnet_store(tmp_path, **override)).load("r18", CPU)


def test_weights_files_are_loaded_without_running_pickled_code(tmp_path):
    (tmp_path / "evil.pth").write_bytes(b"not a state dict")
    torch.save({"weights": torch.zeros(1), "code": print}, tmp_path / "code.pth")
    for name in ("evil.pth", "code.pth"):
        with pytest.raises(ModelLoadError):
            ModelStore.discover(write_resnet_store(tmp_path, weights=f'"{name}"')).load("r18", CPU)


def test_torchscript_models_predict_but_expose_no_layers(tmp_path):
    torch.jit.script(seeded(TinyGapNet)).save(str(tmp_path / "tiny.pt"))
    (tmp_path / "tiny.toml").write_text(
        'name = "tiny_ts"\nsource = "torchscript:tiny.pt"\ninput_size = [32, 32]\ndefault_layer = "features"\n'
    )
    model = ModelStore.discover(tmp_path).load("tiny_ts", CPU)
    assert model.layers == [] and model.default_layer is None
    assert model.num_classes == 5 and model.labels[4] == "class_4"


def test_builtin_manifest_reads(tmp_path):
    manifest = read_manifest(Path(__file__).parents[2] / "model_store" / "manifests" / "efficientnet_lite0.toml")
    assert manifest.source == "builtin:efficientnet_lite0" and manifest.interpolation == "bicubic"


def test_unknown_model_and_duplicate_names_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown model"):
        ModelStore.discover().load("nope", CPU)
    (tmp_path / "dup.toml").write_text('name = "efficientnet_lite0"\nsource = "builtin:efficientnet_lite0"\n')
    with pytest.raises(ModelLoadError, match="two manifests"):
        ModelStore.discover(tmp_path)


def test_labels_are_found_by_full_text_or_synonym_ignoring_case():
    labels = LabelSet(("tabby, tabby cat", "crane", "crane", "tiger cat"))
    assert labels.find("TABBY") == 0 and labels.find("tabby, tabby cat") == 0 and labels.find("Tiger Cat") == 3
    with pytest.raises(AmbiguousLabel):
        labels.find("crane")
    with pytest.raises(UnknownLabel):
        labels.find("dog")
