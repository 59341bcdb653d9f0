"""Model manifests: a small TOML file that says what a model is and how to feed it.

Example (`model_store/manifests/efficientnet_lite0.toml` is the built-in one)::

    name = "resnet50"
    source = "torchvision:resnet50"      # builtin:NAME | timm:ARCH | torchvision:ARCH | torchscript:PATH
    weights = "resnet50.pth"             # state dict, relative to the manifest; loaded with weights_only=True
    labels = "imagenet"                  # "imagenet", a text file (one label a line), or absent: "class_<i>"
    input_size = [224, 224]              # [height, width]
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    interpolation = "bilinear"           # bilinear | bicubic | nearest
    default_layer = "layer4"             # required for layer methods; TorchScript models have none
    classifier_layer = "fc"              # the final nn.Linear; CAM uses its weight rows
    reshape = "vit"                      # token layers: vit | channels_last | none; inferred for timm's ViT/DeiT/Swin
    prefix_tokens = 1                    # with reshape = "vit": tokens before the patches (class, distillation)
    task = "classification"              # classification (softmax) | multilabel (a sigmoid per label) | embedding
    concepts = "concepts.pt"             # embedding models: named vectors {name: (K,) tensor} to compare with
                                         # | segmentation (logits per pixel: torchvision's DeepLabV3, FCN, LRASPP)
                                         # | detection (boxes: torchvision's Faster R-CNN, RetinaNet, FCOS, SSD)
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path

from model_store.errors import ModelLoadError
from model_store.grids import RESHAPES

SOURCE_KINDS = ("builtin", "timm", "torchvision", "torchscript")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
TASKS = ("classification", "multilabel", "embedding", "segmentation", "detection")
"""What a model's outputs mean: one label per image (softmax), independent labels (one sigmoid each), a vector
that describes the image (compared by cosine similarity), one label per pixel (logits (K, H, W)), or boxes with a
label and a score each (torchvision's detection output)."""


@dataclass(frozen=True)
class ModelManifest:
    name: str
    source: str
    base_dir: Path
    default_layer: str | None = None
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    weights: str | None = None
    labels: str | None = None
    classifier_layer: str | None = None
    num_classes: int | None = None
    reshape: str | None = None
    prefix_tokens: int | None = None
    task: str = "classification"
    concepts: str | None = None

    @property
    def source_kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def source_target(self) -> str:
        return self.source.split(":", 1)[1]

    def resolve(self, relative: str) -> Path:
        """A path named in the manifest, relative to the manifest's folder."""
        return (self.base_dir / relative).resolve()


def read_manifest(path: Path) -> ModelManifest:
    """Parse and validate one manifest file.

    Raises:
        ModelLoadError: unreadable TOML, unknown keys, a missing required key or a bad value.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelLoadError(f"cannot read manifest {path}: {exc}") from exc
    return manifest_from_dict(raw, base_dir=path.parent, origin=str(path))


def manifest_from_dict(raw: dict, base_dir: Path, origin: str) -> ModelManifest:
    known = set(ModelManifest.__dataclass_fields__) - {"base_dir"}
    unknown = set(raw) - known
    if unknown:
        raise ModelLoadError(f"{origin}: unknown keys {sorted(unknown)}; known keys are {sorted(known)}")
    for key in ("name", "source"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ModelLoadError(f"{origin}: '{key}' is required and must be a non-empty string")
    kind, _, target = raw["source"].partition(":")
    if kind not in SOURCE_KINDS or not target:
        raise ModelLoadError(f"{origin}: source must be one of {[k + ':...' for k in SOURCE_KINDS]}")
    if "default_layer" in raw and (not isinstance(raw["default_layer"], str) or not raw["default_layer"]):
        raise ModelLoadError(f"{origin}: 'default_layer' must be a non-empty string")
    if raw.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise ModelLoadError(f"{origin}: interpolation must be one of {list(INTERPOLATIONS)}")
    if raw.get("task", "classification") not in TASKS:
        raise ModelLoadError(f"{origin}: task must be one of {list(TASKS)}")
    if "concepts" in raw and (raw.get("task") != "embedding" or not isinstance(raw["concepts"], str)):
        raise ModelLoadError(f"{origin}: 'concepts' (a file of named vectors) goes with task = \"embedding\"")
    if raw.get("reshape", "none") not in RESHAPES:
        raise ModelLoadError(f"{origin}: reshape must be one of {list(RESHAPES)}")
    if "prefix_tokens" in raw:
        prefix = raw["prefix_tokens"]
        if raw.get("reshape") != "vit":
            raise ModelLoadError(f"{origin}: 'prefix_tokens' goes with reshape = \"vit\"")
        if not isinstance(prefix, int) or isinstance(prefix, bool) or prefix < 0:
            raise ModelLoadError(f"{origin}: 'prefix_tokens' must be a whole number >= 0")
    values = dict(raw)
    if raw.get("task") == "detection":
        # torchvision's detectors normalise their [0, 1] input themselves, and have no class count in their output.
        if raw.get("mean", [0, 0, 0]) != [0, 0, 0] or raw.get("std", [1, 1, 1]) != [1, 1, 1]:
            raise ModelLoadError(f"{origin}: a detection model normalises its input itself: leave out mean and std")
        values.update(mean=[0, 0, 0], std=[1, 1, 1])
        if not isinstance(raw.get("num_classes"), int):
            raise ModelLoadError(f"{origin}: a detection model's manifest says num_classes (background included)")
    for key, length in (("input_size", 2), ("mean", 3), ("std", 3)):
        if key in values:
            value = values[key]
            if not isinstance(value, list) or len(value) != length:
                raise ModelLoadError(f"{origin}: '{key}' must be a list of {length} numbers")
            values[key] = tuple(value)
    if any(size < 8 for size in values.get("input_size", (224, 224))):
        raise ModelLoadError(f"{origin}: input_size must be at least 8x8")
    if any(s <= 0 for s in values.get("std", (1, 1, 1))):
        raise ModelLoadError(f"{origin}: std values must be positive")
    return ModelManifest(base_dir=base_dir, **values)
