"""The model store: manifests by name, and `prepare_model`, which makes any module warm and safe to share.

A store holds the built-in manifests (`model_store/manifests/`) and, optionally, those of a store directory
(`*.toml` at its top level or `*/manifest.toml`). Loading a model freezes its parameters, puts it in eval
mode and on its device once, discovers its usable layers, runs a warm-up pass and times plain batches of 1, 2,
4, ... images (`forward_ms_by_batch`), from which the worker learns the batch size that serves fastest.
A usable layer is one whose output is a (B, C, h, w) feature grid, directly or through its `LayerGrid`
(token and channels-last layers of vision transformers, see `model_store.grids`).
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from model_store.errors import ModelLoadError
from model_store.grids import LayerGrid, inferred_reshape, layer_grid, levels_grid
from model_store.hooks import forward_hooks
from model_store.labels import LabelSet, load_labels
from model_store.loaders import load_module, read_state_dict
from model_store.manifest import ModelManifest, read_manifest
from model_store.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

BUILTIN_MANIFESTS = Path(__file__).parent / "manifests"


@dataclass(frozen=True)
class LoadedModel:
    """A warm model and everything needed to feed it and explain it. Never mutated after loading."""

    name: str
    source: str
    module: nn.Module
    device: torch.device
    preprocessing: Preprocessing
    labels: LabelSet
    default_layer: str | None
    classifier_layer: str | None
    layer_shapes: dict[str, tuple[int, int, int]] = field(repr=False)
    forward_ms_by_batch: dict[int, float]
    """Milliseconds per image of a plain forward pass by batch size (1, 2, 4, ... 16), timed when the model was
    warmed (`preferred_batch_size` reads them)."""
    cam_layer: str | None = None
    """The layer whose global average pool feeds the linear classifier, verified numerically; CAM needs it."""
    layer_grids: dict[str, LayerGrid] = field(default_factory=dict, repr=False)
    """The reshape of each token or channels-last layer to its (C, h, w) grid; pass it to `forward_hooks`."""
    reshape: str = "none"
    """How token layers become grids: "vit", "channels_last" or "none" (see `model_store.grids`)."""
    task: str = "classification"
    """What the logits mean (`model_store.manifest.TASKS`): one label per image, a sigmoid per label, an embedding,
    or one label per pixel."""
    concepts: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    """An embedding model's stored concept vectors by name, (K,) each on the CPU, to explain similarities to."""
    grid_extent: tuple[float, float] = (1.0, 1.0)
    """The fraction (of the height, of the width) of a layer's grid that the input covers, from its top-left
    corner: below 1 for a detector, which resizes its input and pads it to a multiple of 32 before its layers."""

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def embedding(self) -> bool:
        return self.task == "embedding"

    @property
    def segmentation(self) -> bool:
        return self.task == "segmentation"

    @property
    def detection(self) -> bool:
        return self.task == "detection"

    @property
    def layers(self) -> list[str]:
        return list(self.layer_shapes)

    def reads_levels(self, layer: str | None) -> bool:
        """Whether `layer` is several feature levels (an FPN) seen as one read-only grid (`model_store.grids`)."""
        grid = self.layer_grids.get(layer) if layer is not None else None
        return grid is not None and grid.layout == "levels"

    @property
    def scripted(self) -> bool:
        """A TorchScript module: no hooks into its layers, so only input-gradient and perturbation methods apply."""
        return isinstance(self.module, torch.jit.ScriptModule)

    @property
    def forward_ms_per_image(self) -> float:
        """Milliseconds of one image's forward pass at the fastest batch size measured."""
        return min(self.forward_ms_by_batch.values())

    def preferred_batch_size(self, limit: int) -> int:
        """The batch size to form when requests queue up, at most `limit`: the largest size measured no slower
        per image than the fastest (see `clearly_slower`), or `limit` when the largest size measured is that.

        On a GPU larger batches are faster per image up to a size that fills it. On a CPU they can be slower:
        the built-in model on two cores takes 11 ms per image in batches of 4 and 17 ms in batches of 8, whose
        activations outgrow the caches and are large enough for glibc to map and unmap them on every pass.
        """
        best = self.forward_ms_per_image
        fast = [size for size, ms in self.forward_ms_by_batch.items() if not clearly_slower(ms, best)]
        if max(fast) == max(self.forward_ms_by_batch):
            return limit
        return min(max(fast), limit)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def classifier_weight(self) -> torch.Tensor:
        """The classifier's weight rows, (K, C)."""
        if self.classifier_layer is None:
            raise LookupError(f"model '{self.name}' declares no classifier layer")
        return self.module.get_submodule(self.classifier_layer).weight


class ModelStore:
    """Manifests by model name."""

    def __init__(self, manifests: dict[str, ModelManifest]) -> None:
        self.manifests = manifests

    @classmethod
    def discover(cls, store_dir: Path | None = None) -> "ModelStore":
        """The built-in manifests plus those in `store_dir`; a later manifest of the same name is refused."""
        paths = sorted(BUILTIN_MANIFESTS.glob("*.toml"))
        if store_dir is not None:
            if not store_dir.is_dir():
                raise ModelLoadError(f"model store directory not found: {store_dir}")
            paths += sorted(store_dir.glob("*.toml")) + sorted(store_dir.glob("*/manifest.toml"))
        manifests: dict[str, ModelManifest] = {}
        for path in paths:
            manifest = read_manifest(path)
            if manifest.name in manifests:
                raise ModelLoadError(f"two manifests name the model '{manifest.name}' ({path})")
            manifests[manifest.name] = manifest
        return cls(manifests)

    def load(self, name: str, device: torch.device) -> LoadedModel:
        """Load, freeze and warm one model.

        Raises:
            ModelLoadError: unknown name, or anything wrong with the manifest's files or layers.
        """
        if name not in self.manifests:
            raise ModelLoadError(f"unknown model '{name}'; the store has {sorted(self.manifests)}")
        manifest = self.manifests[name]
        module = load_module(manifest)
        fill, grid_extent = (
            detector_input(module, manifest.input_size) if manifest.task == "detection" else (None, None)
        )
        preprocessing = Preprocessing(
            manifest.input_size, manifest.mean, manifest.std, manifest.interpolation, letterbox_fill=fill
        )
        loaded = prepare_model(
            name=name,
            source=manifest.source,
            module=module,
            preprocessing=preprocessing,
            labels_spec=manifest.labels,
            base_dir=manifest.base_dir,
            default_layer=manifest.default_layer,
            classifier_layer=manifest.classifier_layer,
            device=device,
            reshape=manifest.reshape,
            prefix_tokens=manifest.prefix_tokens,
            task=manifest.task,
            num_classes=manifest.num_classes,
        )
        if grid_extent is not None:
            loaded = replace(loaded, grid_extent=grid_extent)
        if manifest.concepts is None:
            return loaded
        return replace(loaded, concepts=read_concepts(manifest.resolve(manifest.concepts), loaded))


def detector_input(module: nn.Module, input_size: tuple[int, int]) -> tuple[tuple[float, ...], tuple[float, float]]:
    """A torchvision detector's letterbox colour and grid extent (`Preprocessing.letterbox_fill`,
    `LoadedModel.grid_extent`). The colour is the detector's own normalisation mean, which it normalises to 0:
    the letterbox is then what the detector pads a batch of images of different sizes with. The extent is read
    off the detector's transform of an input of `input_size`: the size it resizes to over the size it pads to."""
    module.eval()
    with torch.no_grad():
        images, _ = module.transform([torch.zeros(3, *input_size)])  # type: ignore[operator]
    (height, width), padded = images.image_sizes[0], images.tensors.shape[-2:]
    return tuple(float(v) for v in module.transform.image_mean), (height / padded[0], width / padded[1])  # type: ignore[union-attr]


def read_concepts(path: Path, model: LoadedModel) -> dict[str, torch.Tensor]:
    """An embedding model's named concept vectors from a file of tensors (`torch.save({name: vector})`, read with
    `weights_only=True`), each as long as the model's embedding.

    Raises:
        ModelLoadError: an unreadable file, or a vector that is not (K,) and finite.
    """
    concepts = read_state_dict(path)
    size = model.num_classes
    for name, vector in concepts.items():
        if vector.shape != (size,) or not bool(torch.isfinite(vector).all()):
            raise ModelLoadError(
                f"model '{model.name}': concept '{name}' in {path} is {tuple(vector.shape)}; each concept is a finite "
                f"vector of the embedding's size, ({size},)"
            )
    return {name: vector.detach().float().cpu() for name, vector in concepts.items()}


def prepare_model(
    *,
    name: str,
    source: str,
    module: nn.Module,
    preprocessing: Preprocessing,
    default_layer: str | None,
    classifier_layer: str | None,
    device: torch.device,
    labels_spec: str | None = None,
    base_dir: Path = Path("."),
    reshape: str | None = None,
    prefix_tokens: int | None = None,
    task: str = "classification",
    num_classes: int | None = None,
) -> LoadedModel:
    """Freeze `module`, move it to `device`, discover its layers, verify its head and warm it up.

    `reshape` and `prefix_tokens` say how token layers become grids (`model_store.grids`); when `reshape` is
    None they are inferred for timm's ViT/DeiT/Swin families, and a given `prefix_tokens` wins. `num_classes` is
    a detection model's label count (its outputs do not show it).

    Raises:
        ModelLoadError: the default or classifier layer is unknown or unusable.
    """
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module.to(device)

    height, width = preprocessing.input_size
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, height, width, generator=generator).to(device)
    scripted = isinstance(module, torch.jit.ScriptModule)
    layer_outputs: dict[str, torch.Tensor] = {}
    layer_grids: dict[str, LayerGrid] = {}
    inferred, inferred_prefix = inferred_reshape(module)
    reshape = reshape or inferred
    prefix = prefix_tokens if prefix_tokens is not None else inferred_prefix if reshape == inferred else 1
    submodules = dict(module.named_modules())

    def record(layer: str, output: torch.Tensor) -> None:
        grid = layer_grid(reshape, prefix, submodules[layer], output, len(probe), (height, width))
        if grid is not None:
            layer_grids[layer] = grid
            output = grid.to_grid(output)
        elif output.ndim != 4:
            return
        if output.shape[-1] * output.shape[-2] > 1:
            layer_outputs[layer] = output.detach().clone()

    def record_levels(layer: str, output: Mapping[str, torch.Tensor]) -> None:
        grid = levels_grid(output, len(probe))
        if grid is not None:
            layer_grids[layer] = grid
            layer_outputs[layer] = grid.to_grid(output).detach().clone()

    names = [] if scripted else [n for n in submodules if n]
    with forward_hooks(module, names, record, on_levels=record_levels), torch.inference_mode():
        logits = module(probe)
    _check_outputs(name, task, logits, (height, width))
    labels = load_labels(labels_spec, base_dir, num_classes if task == "detection" else logits.shape[1])
    layer_shapes = {layer: tuple(out.shape[1:]) for layer, out in layer_outputs.items()}

    if scripted:
        if default_layer is not None:
            logger.warning("model %s: TorchScript layers cannot be hooked; layer methods are unavailable", name)
        default_layer = None
    elif default_layer is not None and default_layer not in layer_shapes:
        raise ModelLoadError(
            f"model '{name}': default_layer '{default_layer}' is not a layer with a 2-D feature map; "
            f'last such layers: {list(layer_shapes)[-5:]} (token layers need reshape = "vit" or '
            '"channels_last" in the manifest)'
        )
    cam_layer = None
    if classifier_layer is not None:
        classifier = dict(module.named_modules()).get(classifier_layer)
        if not isinstance(classifier, nn.Linear):
            raise ModelLoadError(f"model '{name}': classifier_layer '{classifier_layer}' is not an nn.Linear")
        if default_layer is not None and _is_gap_linear_head(layer_outputs[default_layer], classifier, logits):
            cam_layer = default_layer
    forward_ms_by_batch = _time_batches(module, preprocessing.input_size, device)
    logger.info(
        "model %s warm on %s: %d classes, %d layers, ms per image by batch size %s",
        name,
        device,
        len(labels),
        len(layer_shapes),
        {size: round(ms, 2) for size, ms in forward_ms_by_batch.items()},
    )
    return LoadedModel(
        name=name,
        source=source,
        module=module,
        device=device,
        preprocessing=preprocessing,
        labels=labels,
        default_layer=default_layer,
        classifier_layer=classifier_layer,
        layer_shapes=layer_shapes,
        forward_ms_by_batch=forward_ms_by_batch,
        cam_layer=cam_layer,
        layer_grids={layer: grid for layer, grid in layer_grids.items() if layer in layer_shapes},
        reshape=reshape,
        task=task,
    )


DETECTION_KEYS = {"boxes", "labels", "scores"}
MAX_SEGMENTATION_CLASSES = 256
"""A segmentation model's classes fit one byte: the predicted mask is a palette PNG."""


def _check_outputs(name: str, task: str, logits: object, input_size: tuple[int, int]) -> None:
    """Logits (B, K) per image, (B, K, H, W) per pixel at the input size for a segmentation model, or a detection
    model's list of {"boxes", "labels", "scores"} per image."""
    if task == "detection":
        if not (isinstance(logits, list) and all(isinstance(o, dict) and DETECTION_KEYS <= set(o) for o in logits)):
            raise ModelLoadError(
                f"model '{name}': a detection model answers a list of dicts with {sorted(DETECTION_KEYS)} per image "
                "(torchvision's detection models)"
            )
    elif task == "segmentation":
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or tuple(logits.shape[-2:]) != input_size:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelLoadError(
                f"model '{name}': a segmentation model's logits are (B, K, H, W) at the input size {list(input_size)}, "
                f"got {shape}"
            )
        if logits.shape[1] > MAX_SEGMENTATION_CLASSES:
            raise ModelLoadError(f"model '{name}': at most {MAX_SEGMENTATION_CLASSES} segmentation classes")
    elif not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        hint = (
            ' (logits per pixel: task = "segmentation")'
            if isinstance(logits, torch.Tensor) and logits.ndim == 4
            else ""
        )
        raise ModelLoadError(f"model '{name}': expected logits of shape (B, K), got {shape}{hint}")


BATCH_SIZES = (1, 2, 4, 8, 16)
TIMING_ROUNDS = 5
TIMING_BUDGET_S = 4.0  # about the most the timing takes: larger sizes are left out past a sixth of it


def clearly_slower(ms_per_image: float, best_ms_per_image: float) -> bool:
    """Whether a batch size's time per image is worse than the best by more than timing noise: 25% (a shared
    machine's noise between two sizes at warm-up; on two cores the built-in model's batches of 8 are 35-80%
    slower per image than its batches of 4) and half a millisecond (the fast passes of small models never cap
    their batches)."""
    return ms_per_image > 1.25 * best_ms_per_image and ms_per_image - best_ms_per_image > 0.5


def _time_batches(module: nn.Module, input_size: tuple[int, int], device: torch.device) -> dict[int, float]:
    """Milliseconds per image of a plain forward pass of noise images, by batch size: the best of five rounds
    taken in turn over the sizes (so that a burst of load on a shared machine spoils one round, not one size),
    after a pass that allocates for each size. Sizes stop growing once those first passes have taken a sixth of
    `TIMING_BUDGET_S` (a large model on a CPU)."""
    probes: dict[int, torch.Tensor] = {}
    started = time.perf_counter()
    for batch in BATCH_SIZES:
        probes[batch] = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
        _timed_forward(module, probes[batch])
        if time.perf_counter() - started > TIMING_BUDGET_S / (TIMING_ROUNDS + 1):
            break
    timings = {batch: float("inf") for batch in probes}
    for _ in range(TIMING_ROUNDS):
        for batch, probe in probes.items():
            timings[batch] = min(timings[batch], _timed_forward(module, probe) * 1000 / batch)
    return timings


def _timed_forward(module: nn.Module, probe: torch.Tensor) -> float:
    """Seconds of one plain forward pass of `probe`."""
    started = time.perf_counter()
    with torch.inference_mode():
        module(probe)
    if probe.device.type == "cuda":
        torch.cuda.synchronize(probe.device)
    return time.perf_counter() - started


def _is_gap_linear_head(activation: torch.Tensor, classifier: nn.Linear, logits: torch.Tensor) -> bool:
    """Whether logits == classifier(global average pool(activation)) on the probe batch.

    Args:
        activation: (B, C, h, w) output of the candidate layer.
        classifier: the final linear layer.
        logits: (B, K) output of the model.
    """
    if activation.shape[1] != classifier.in_features:
        return False
    with torch.inference_mode():
        predicted = classifier(activation.mean(dim=(2, 3)))
    return bool(torch.allclose(predicted, logits, rtol=1e-3, atol=1e-3 * float(logits.abs().max() + 1)))
